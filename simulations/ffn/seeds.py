"""The seed study: how many seeds does Table 5 need? (arXiv 2403.18699, Appendix B, Table 5; the study
behind the default of ``simulations/synthetic_ffn.py``, :data:`simulations.ffn.report.DEFAULT_SEEDS`.)

A verdict that one machine prints and another does not is no verdict. Between two machines the per-seed
numbers of the synthetic experiment differ (float32 summation order changes the training trajectories),
which moves the mean paired gain by a fraction of its standard error; a fresh set of seeds moves it by
about one standard error. So the number of seeds is chosen such that a fresh set of seeds keeps every
verdict in place:

1. :func:`pool_results`: train a pool of P seeds in a data regime, every loss with and without CLOP (the
   per-run table is saved after every configuration, so a killed study resumes where it stopped);
2. :func:`agreement`: for each block size n, split the pool into disjoint blocks of n consecutive seeds
   (independent reruns with other base seeds) and also draw B bootstrap samples of n seeds from the pool;
   judge both claims of every loss (:mod:`clop.stats`) on each and count how often the verdict equals the
   pool's;
3. :func:`recommend`: the smallest block size at which every verdict that the pool decides (holds or fails)
   agrees in every disjoint block and in at least :data:`AGREEMENT_BOOTSTRAP` of the bootstrap samples. A
   claim that even the pool leaves inconclusive is listed apart: no affordable n decides it, and the report
   prints it as inconclusive most of the time (the table gives how often).

:func:`markdown` writes the report (table5_seed_study.md). The bootstrap draws come from
``numpy.random.default_rng(seed)`` (seed 0 by default), so the same pool gives the same tables.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from clop import stats
from clop.util.io import atomic_path
from simulations.ffn import data, report, train

__all__ = ["AGREEMENT_BOOTSTRAP", "BIG_GAIN_PP", "runs_path", "pool_results", "agreement", "recommend", "markdown"]

AGREEMENT_BOOTSTRAP = 0.99
"""Share of bootstrap samples that must print the pool's verdict (step 3 of the module docstring)."""
BIG_GAIN_PP = 10.0
"""A seed whose |gain| exceeds this (pp) is a run that failed with one setting and not the other."""


def runs_path(out: Path, regime: str) -> Path:
    """The pool's per-run table of ``regime`` in ``out``: table5_seed_study_runs_<regime>.csv."""
    return out / f"table5_seed_study_runs_{regime}.csv"


def pool_results(regime: str, pool: int, out: Path, *, device, chunk, show_progress: bool) -> pd.DataFrame:
    """The per-run table of seeds 0..pool-1 in ``regime``, every loss with and without CLOP; configurations
    already in ``out``'s runs file (from an interrupted study) are read back instead of trained again."""
    path = runs_path(out, regime)
    done = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if not done.empty and int(done["seed"].max()) + 1 != pool:
        done = pd.DataFrame()  # another pool size: start over
    frames = [done] if not done.empty else []
    for loss in train.LOSSES:
        for clop in (False, True):
            if not done.empty and ((done["loss"] == loss) & (done["clop"] == clop)).any():
                continue
            start = time.perf_counter()
            res, _, _ = train.run_experiment(
                list(range(pool)), losses=(loss,), clop_settings=(clop,), data_options=data.REGIMES[regime],
                device=device, chunk=chunk, show_progress=False,
            )
            frames.append(res)
            with atomic_path(path) as tmp:
                pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)
            if show_progress:
                label = f"{train.DISPLAY[loss]}{' + CLOP' if clop else ''}"
                print(f"seed study [{regime}] {label}: {pool} runs in {time.perf_counter() - start:.0f} s",
                      file=sys.stderr, flush=True)
    return pd.concat(frames, ignore_index=True)


def _verdicts(diffs: np.ndarray, printed: float) -> tuple[str, str]:
    g = stats.paired_gain(diffs)
    return stats.direction_verdict(g, report.NEGLIGIBLE_PP)[0], stats.size_verdict(g, printed)[0]


def agreement(results: pd.DataFrame, regime: str, sizes, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """Per loss, claim and block size: the pool's verdict and how often blocks / bootstrap samples agree."""
    rng = np.random.default_rng(seed)
    rows = []
    for loss in [n for n in train.LOSSES if n in set(results["loss"])]:
        diffs = report.paired_diffs(results, loss).sort_index().to_numpy()
        printed = report.printed_gain(loss)
        pool_gain = stats.paired_gain(diffs)
        pool_verdict = _verdicts(diffs, printed)
        for n in sizes:
            blocks = [diffs[i:i + n] for i in range(0, len(diffs) - n + 1, n)]
            block_v = [_verdicts(b, printed) for b in blocks]
            boot_v = [_verdicts(diffs[rng.integers(0, len(diffs), n)], printed) for _ in range(n_boot)]
            for j, claim in enumerate(("raises", "size")):
                rows.append({
                    "regime": regime, "loss": loss, "claim": claim, "n": n,
                    "pool_n": len(diffs), "pool_big_gains": int((np.abs(diffs) > BIG_GAIN_PP).sum()),
                    "pool_gain": pool_gain.mean, "pool_low": pool_gain.low,
                    "pool_high": pool_gain.high, "pool_verdict": pool_verdict[j], "blocks": len(blocks),
                    "blocks_agree": sum(v[j] == pool_verdict[j] for v in block_v),
                    "block_verdicts": " ".join(v[j] for v in block_v),
                    "bootstrap": n_boot,
                    "bootstrap_agree": sum(v[j] == pool_verdict[j] for v in boot_v) / n_boot,
                })
    return pd.DataFrame(rows)


def recommend(table: pd.DataFrame) -> int | None:
    """The smallest n at which every verdict the pool decides agrees in every block and in >= 99 % of
    bootstrap samples (None when no n in the table does)."""
    decided = table[table["pool_verdict"] != "inconclusive"]
    for n in sorted(set(decided["n"])):
        sub = decided[decided["n"] == n]
        if (sub["blocks_agree"] == sub["blocks"]).all() and (sub["bootstrap_agree"] >= AGREEMENT_BOOTSTRAP).all():
            return int(n)
    return None


def markdown(table: pd.DataFrame, pool: int, n_boot: int, runtime_s: float) -> str:
    """table5_seed_study.md: the agreement table and the recommended number of seeds."""
    best = recommend(table)
    default = report.DEFAULT_SEEDS
    lines = [
        "# How many seeds Table 5 needs (simulations/table5_seeds.py)",
        "",
        f"Pool: seeds 0..{pool - 1} in each data regime, every loss with and without CLOP (default settings). For "
        "each block size n: the pool split into disjoint blocks of n consecutive seeds (reruns with other base "
        f"seeds) and {n_boot} bootstrap samples of n seeds. A cell gives how many blocks, and what share of the "
        "bootstrap samples, print the pool's verdict (clop/stats.py: 95 % t-interval of the paired "
        f"gain; \"raises\": above 0 / below 0 or within ±{report.NEGLIGIBLE_PP:g} pp / straddling; \"size\": "
        "the printed gain inside the interval or not; a verdict is decided only when the interval clears every "
        f"deciding threshold by {stats.DECISION_MARGIN_SE:g} standard errors, else inconclusive). \"big\" counts "
        f"the pool's seeds whose gain exceeds ±{BIG_GAIN_PP:g} pp: runs that failed with one setting and not "
        "the other, which make the gain heavy-tailed.",
        "",
        f"**Recommended: n = {best}** (the smallest n at which every verdict the pool decides comes out the "
        f"same in every block and in >= {AGREEMENT_BOOTSTRAP:.0%} of bootstrap samples). synthetic_ffn.py's default "
        f"is {default}"
        + (" — the same." if best == default
           else " — they differ: update DEFAULT_SEEDS in simulations/ffn/report.py.")
        if best is not None else "**No block size tried keeps every decided verdict in place**; try larger ones.",
        "",
    ]
    undecided = table[table["pool_verdict"] == "inconclusive"][["regime", "loss", "claim"]].drop_duplicates()
    if not undecided.empty:
        names = ", ".join(f"{r.regime} {train.DISPLAY[r.loss]} \"{r.claim}\"" for r in undecided.itertuples())
        lines += [f"Left inconclusive by the pool itself, so no affordable n decides them: {names}. The table "
                  "shows how often a block of n seeds prints that same \"inconclusive\".", ""]
    sizes = sorted(set(table["n"]))
    lines += ["| regime | loss | claim | pool gain, pp [95 %] | big | pool verdict | "
              + " | ".join(f"n = {n}" for n in sizes) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(sizes)]
    for (regime, loss, claim), sub in table.groupby(["regime", "loss", "claim"], sort=False):
        first = sub.iloc[0]
        cells = [f"{int(r['blocks_agree'])}/{int(r['blocks'])}, {100 * r['bootstrap_agree']:.1f} %"
                 for _, r in sub.sort_values("n").iterrows()]
        lines.append(
            f"| {regime} | {train.DISPLAY[loss]} | {claim} | {first['pool_gain']:+.2f} [{first['pool_low']:+.2f}, "
            f"{first['pool_high']:+.2f}] | {int(first['pool_big_gains'])} | {first['pool_verdict']} | "
            + " | ".join(cells) + " |"
        )
    lines += ["", f"Runtime of the statistics: {runtime_s:.1f} s; the pool's runs are in "
              "table5_seed_study_runs_<regime>.csv."]
    return "\n".join(lines) + "\n"
