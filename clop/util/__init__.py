"""Plumbing shared by every package of the suite: crash-safe file output (io), argument checks (checks),
device and thread selection (device), progress bars (progress), heap-memory retention (alloc) and
command-line helpers (cli). Import each name from its module."""
