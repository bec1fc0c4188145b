"""How many seeds does Table 5 need? The study behind synthetic_ffn.py's default (arXiv 2403.18699, Table 5).

A verdict that one machine prints and another does not is no verdict. Between two machines the per-seed
numbers of the synthetic experiment differ (float32 summation order changes the training trajectories),
which moves the mean paired gain by a fraction of its standard error; a fresh set of seeds moves it by
about one standard error. So the number of seeds is chosen such that a fresh set of seeds keeps every
verdict in place:

1. train a pool of P seeds (default 400) in both data regimes, every loss with and without CLOP (the
   per-run table is saved after every configuration, so a killed study resumes where it stopped);
2. for each block size n, split the pool into disjoint blocks of n consecutive seeds (independent reruns
   with other base seeds) and also draw B bootstrap samples of n seeds from the pool; judge both claims of
   every loss (clop/stats.py) on each and count how often the verdict equals the pool's;
3. the recommended n is the smallest block size at which every verdict that the pool decides (holds or
   fails) agrees in every disjoint block and in at least 99 % of the bootstrap samples. A claim that even
   the pool leaves inconclusive is listed apart: no affordable n decides it, and the report prints it as
   inconclusive most of the time (the table gives how often).

Run: python simulations/table5_seeds.py [--pool 400] [--sizes 10 20 40 60 100 200] [--out paper_figures]
Writes table5_seed_study_runs_<regime>.csv (the pool), table5_seed_study.csv (agreement per regime, loss,
claim and n) and table5_seed_study.md. About 15 minutes per regime on one core of a 2-core Xeon.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

if __package__ in (None, ""):  # run as `python simulations/table5_seeds.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clop.util.alloc import retain_freed_memory  # noqa: E402
from clop.util.device import default_device, torch_threads  # noqa: E402
from clop.util.io import atomic_path, check_output_dir, staged_outputs  # noqa: E402
from clop import stats  # noqa: E402
from simulations import ffn_data, ffn_train, table5_report  # noqa: E402

__all__ = ["pool_results", "agreement", "recommend", "markdown", "main"]

AGREEMENT_BOOTSTRAP = 0.99  # step 3 of the module docstring
BIG_GAIN_PP = 10.0  # a seed whose |gain| exceeds this is a run that failed with one setting and not the other


def _runs_path(out: Path, regime: str) -> Path:
    return out / f"table5_seed_study_runs_{regime}.csv"


def pool_results(regime: str, pool: int, out: Path, *, device, chunk, show_progress: bool) -> pd.DataFrame:
    """The per-run table of seeds 0..pool-1 in ``regime``, every loss with and without CLOP; configurations
    already in ``out``'s runs file (from an interrupted study) are read back instead of trained again."""
    path = _runs_path(out, regime)
    done = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if not done.empty and int(done["seed"].max()) + 1 != pool:
        done = pd.DataFrame()  # another pool size: start over
    frames = [done] if not done.empty else []
    for loss in ffn_train.LOSSES:
        for clop in (False, True):
            if not done.empty and ((done["loss"] == loss) & (done["clop"] == clop)).any():
                continue
            start = time.perf_counter()
            res, _, _ = ffn_train.run_experiment(
                list(range(pool)), losses=(loss,), clop_settings=(clop,), data_options=ffn_data.REGIMES[regime],
                device=device, chunk=chunk, show_progress=False,
            )
            frames.append(res)
            with atomic_path(path) as tmp:
                pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)
            if show_progress:
                label = f"{ffn_train.DISPLAY[loss]}{' + CLOP' if clop else ''}"
                print(f"seed study [{regime}] {label}: {pool} runs in {time.perf_counter() - start:.0f} s",
                      file=sys.stderr, flush=True)
    return pd.concat(frames, ignore_index=True)


def _verdicts(diffs: np.ndarray, printed: float) -> tuple[str, str]:
    g = stats.paired_gain(diffs)
    return stats.direction_verdict(g, table5_report.NEGLIGIBLE_PP)[0], stats.size_verdict(g, printed)[0]


def agreement(results: pd.DataFrame, regime: str, sizes, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """Per loss, claim and block size: the pool's verdict and how often blocks / bootstrap samples agree."""
    rng = np.random.default_rng(seed)
    rows = []
    for loss in [n for n in ffn_train.LOSSES if n in set(results["loss"])]:
        diffs = table5_report.paired_diffs(results, loss).sort_index().to_numpy()
        printed = table5_report.printed_gain(loss)
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
    default = table5_report.DEFAULT_SEEDS
    lines = [
        "# How many seeds Table 5 needs (simulations/table5_seeds.py)",
        "",
        f"Pool: seeds 0..{pool - 1} in each data regime, every loss with and without CLOP (default settings). For "
        "each block size n: the pool split into disjoint blocks of n consecutive seeds (reruns with other base "
        f"seeds) and {n_boot} bootstrap samples of n seeds. A cell gives how many blocks, and what share of the "
        "bootstrap samples, print the pool's verdict (clop/stats.py: 95 % t-interval of the paired "
        f"gain; \"raises\": above 0 / below 0 or within ±{table5_report.NEGLIGIBLE_PP:g} pp / straddling; \"size\": "
        "the printed gain inside the interval or not; a verdict is decided only when the interval clears every "
        f"deciding threshold by {stats.DECISION_MARGIN_SE:g} standard errors, else inconclusive). \"big\" counts "
        f"the pool's seeds whose gain exceeds ±{BIG_GAIN_PP:g} pp: runs that failed with one setting and not "
        "the other, which make the gain heavy-tailed.",
        "",
        f"**Recommended: n = {best}** (the smallest n at which every verdict the pool decides comes out the "
        f"same in every block and in >= {AGREEMENT_BOOTSTRAP:.0%} of bootstrap samples). synthetic_ffn.py's default "
        f"is {default}" + (" — the same." if best == default else " — they differ: update table5_report.DEFAULT_SEEDS.")
        if best is not None else "**No block size tried keeps every decided verdict in place**; try larger ones.",
        "",
    ]
    undecided = table[table["pool_verdict"] == "inconclusive"][["regime", "loss", "claim"]].drop_duplicates()
    if not undecided.empty:
        names = ", ".join(f"{r.regime} {ffn_train.DISPLAY[r.loss]} \"{r.claim}\"" for r in undecided.itertuples())
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
            f"| {regime} | {ffn_train.DISPLAY[loss]} | {claim} | {first['pool_gain']:+.2f} [{first['pool_low']:+.2f}, "
            f"{first['pool_high']:+.2f}] | {int(first['pool_big_gains'])} | {first['pool_verdict']} | "
            + " | ".join(cells) + " |"
        )
    lines += ["", f"Runtime of the statistics: {runtime_s:.1f} s; the pool's runs are in "
              "table5_seed_study_runs_<regime>.csv."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", type=int, default=400, help="seeds in the pool per regime (default 400)")
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 40, 60, 100, 200],
                   help="block sizes n to judge (default 10 20 40 60 100 200)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap samples per n (default 2000)")
    p.add_argument("--regimes", nargs="+", choices=tuple(ffn_data.REGIMES), default=list(ffn_data.REGIMES),
                   help="data regimes (default both)")
    p.add_argument("--out", default="paper_figures", help="output directory (default paper_figures/)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if present, else cpu)")
    p.add_argument("--chunk", type=int, default=None, help="runs trained together (default: ffn_train's)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    if args.pool < 2:
        p.error(f"--pool must be an integer >= 2; got {args.pool}")
    if any(n < 2 or n > args.pool for n in args.sizes):
        p.error(f"--sizes must be integers in [2, --pool={args.pool}]; got {args.sizes}")
    for name in ("bootstrap", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be an integer >= 1; got {getattr(args, name)}")
    if args.chunk is not None and args.chunk < 1:
        p.error(f"--chunk must be an integer >= 1; got {args.chunk}")
    try:
        device = default_device(args.device)
        out = check_output_dir(args.out)
    except ValueError as exc:
        p.error(str(exc).replace("device=", "--device "))
    retain_freed_memory()
    with torch_threads(args.threads):
        tables = [
            pool_results(r, args.pool, out, device=device, chunk=args.chunk, show_progress=not args.no_progress)
            for r in args.regimes
        ]
    start = time.perf_counter()
    table = pd.concat([agreement(t, r, sorted(args.sizes), args.bootstrap) for t, r in zip(tables, args.regimes)],
                      ignore_index=True)
    text = markdown(table, args.pool, args.bootstrap, time.perf_counter() - start)
    with staged_outputs(out) as stage:
        table.to_csv(stage("table5_seed_study.csv"), index=False)
        stage("table5_seed_study.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    raise SystemExit(main())
