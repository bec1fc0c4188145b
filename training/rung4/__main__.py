"""``python -m training.rung4``: rung 3's command line (:mod:`training.rung3.cli`) on rung 4's grid."""

from training.rung3.cli import cli
from training.rung3.grid import RUNG4

raise SystemExit(cli(rung=RUNG4))
