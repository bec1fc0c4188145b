"""The seed-block study of the practice study: how many seeds do its verdicts need?

Paper: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP), arXiv 2403.18699.

The same question as for Table 5 (:mod:`simulations.ffn.seeds`), asked of the Section 5 claims: a verdict that
another set of seeds does not print is no verdict. Given a pool of P seeds at every point that carries a
verdict (:func:`training.practice.grid.carries_verdict`):

1. the pool's verdicts: every verdict finding and every claim, judged on all P seeds;
2. :func:`agreement`: for each block size n, the pool split into disjoint blocks of n consecutive seeds (reruns
   with other seeds) and ``boots`` bootstrap samples of n seeds drawn from the pool with replacement (each
   draw relabelled, so a seed drawn twice counts as two paired samples); each judged like the pool, counting how
   often it prints the pool's verdict;
3. :func:`recommend`: the smallest n at which every verdict the pool decides (holds or fails) comes out the same
   in every block and in at least :data:`AGREEMENT_BOOTSTRAP` of the bootstrap samples, as for Table 5.

:func:`markdown` writes the table (``seed_blocks.md``; the numbers are in ``seed_blocks.csv``). The bootstrap
draws come from ``numpy.random.default_rng(seed)`` (seed 0 by default): the same pool gives the same tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from training.practice.claims import Claim

__all__ = ["AGREEMENT_BOOTSTRAP", "verdicts", "relabel", "agreement", "recommend", "markdown"]

AGREEMENT_BOOTSTRAP = 0.99
"""Share of bootstrap samples that must print the pool's verdict (the rule of the Table 5 seed study)."""

Judge = Callable[[pd.DataFrame, pd.DataFrame], list[Claim]]


def verdicts(claims: Sequence[Claim]) -> dict[tuple[str, str, str], str]:
    """(claim, scope, measured) -> verdict of every verdict finding, and (claim, "", "claim") -> the claim's."""
    out = {(c.key, "", "claim"): c.verdict for c in claims}
    for c in claims:
        for f in c.findings:
            if f.role == "verdict":
                out[(c.key, f.scope, f.measured)] = f.verdict
    return out


def relabel(runs: pd.DataFrame, eta: pd.DataFrame, seeds: Sequence[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs (and their intervals) of ``seeds`` in that order, the j-th drawn seed renamed to seed j (and its
    runs' names suffixed by #j), so that a seed drawn twice is two samples, paired across points as before."""
    parts, eparts = [], []
    for j, s in enumerate(seeds):
        r = runs[runs["seed"] == s]
        parts.append(r.assign(seed=j, run=r["run"] + f"#{j}"))
        e = eta[eta["run"].isin(set(r["run"]))]
        eparts.append(e.assign(seed=j, run=e["run"] + f"#{j}"))
    return (pd.concat(parts, ignore_index=True) if parts else runs.iloc[:0],
            pd.concat(eparts, ignore_index=True) if eparts else eta.iloc[:0])


def agreement(runs: pd.DataFrame, eta: pd.DataFrame, judge: Judge, pool: Sequence[int], sizes: Sequence[int],
              boots: int, seed: int = 0) -> pd.DataFrame:
    """One row per verdict of the pool (module docstring): ``claim, scope, measured, pool`` (the pool's verdict),
    then per n of ``sizes``: ``blocks_<n>`` (how many disjoint blocks), ``agree_<n>`` (how many print the pool's
    verdict) and ``boot_<n>`` (the share of ``boots`` bootstrap samples that do). ``judge(runs, eta)`` gives
    the claims."""
    pool = list(pool)
    base = verdicts(judge(*relabel(runs, eta, pool)))
    table = pd.DataFrame([{"claim": k[0], "scope": k[1], "measured": k[2], "pool": v} for k, v in base.items()])
    rng = np.random.default_rng(seed)
    for n in sizes:
        blocks = [pool[i:i + n] for i in range(0, len(pool) - n + 1, n)]
        agree = dict.fromkeys(base, 0)
        for block in blocks:
            got = verdicts(judge(*relabel(runs, eta, block)))
            for k in base:
                agree[k] += got.get(k) == base[k]
        hits = dict.fromkeys(base, 0)
        for _ in range(boots):
            got = verdicts(judge(*relabel(runs, eta, list(rng.choice(pool, size=n, replace=True)))))
            for k in base:
                hits[k] += got.get(k) == base[k]
        table[f"blocks_{n}"] = len(blocks)
        table[f"agree_{n}"] = [agree[k] for k in base]
        table[f"boot_{n}"] = [hits[k] / boots for k in base]
    return table


def recommend(table: pd.DataFrame, sizes: Sequence[int]) -> int | None:
    """The smallest n of ``sizes`` at which every verdict the pool decides agrees in every block and in at least
    :data:`AGREEMENT_BOOTSTRAP` of the bootstrap samples; None if there is none."""
    decided = table[table["pool"].isin(["holds", "fails"])]
    for n in sorted(sizes):
        if ((decided[f"agree_{n}"] == decided[f"blocks_{n}"]) & (decided[f"boot_{n}"] >= AGREEMENT_BOOTSTRAP)).all():
            return n
    return None


def markdown(table: pd.DataFrame, pool: Sequence[int], sizes: Sequence[int], boots: int, runtime_s: float) -> str:
    """seed_blocks.md: the rule, the recommendation and the table."""
    n = recommend(table, sizes)
    decided = table["pool"].isin(["holds", "fails"])
    lines = [
        "# How many seeds the practice study's verdicts need", "",
        f"Pool: seeds {min(pool)}..{max(pool)} ({len(pool)}) at every point that carries a verdict. For each block size "
        f"n: the pool split into disjoint blocks of n consecutive seeds, and {boots} bootstrap samples of n seeds drawn "
        "from the pool. A cell gives how many blocks, and what share of the bootstrap samples, print the pool's verdict "
        "(the rules of clop.stats and training.practice.claims, Holm's correction included).", "",
        (f"**Recommended: n = {n}**" if n is not None else "**No n here keeps every decided verdict in place**") +
        f" (the smallest n at which every verdict the pool decides comes out the same in every block and in ≥ "
        f"{100 * AGREEMENT_BOOTSTRAP:g} % of bootstrap samples). The pool decides {int(decided.sum())} of the "
        f"{len(table)} verdicts; the others are inconclusive (or not testable) on {len(pool)} seeds already.", "",
        "| claim | scope | measured | pool verdict | " + " | ".join(f"n = {s}" for s in sizes) + " |",
        "|---|---|---|---|" + "---|" * len(sizes),
    ]
    for r in table.itertuples():
        cells = [f"{getattr(r, f'agree_{s}')}/{getattr(r, f'blocks_{s}')}, {100 * getattr(r, f'boot_{s}'):.0f} %"
                 for s in sizes]
        lines.append(f"| {r.claim} | {r.scope or '(the claim)'} | {r.measured} | {r.pool} | " + " | ".join(cells) + " |")
    lines += ["", f"Runtime of the statistics: {runtime_s:.0f} s.", ""]
    return "\n".join(lines)
