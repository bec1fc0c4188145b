"""The report of the practice study: figures, their CSVs, the claim records and practice.md.

Paper: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP), arXiv 2403.18699.

:func:`collect` reads the study's run directories (config.json, metrics.csv, geometry.csv, linear_eval.json, and
the end-of-run geometry of :mod:`training.practice.endgeom`, kept in ``RUN/end_geometry.json`` once computed)
into two tables; :func:`report` draws everything from them:

* ``practice_runs.csv``  one row per finished or diverged run (:data:`training.practice.table.RUN_COLUMNS`);
* ``eta_eff.csv``        one row per logged interval of every run: the Appendix D fit (geometry.csv) with the
                         run's settings, ``trusted`` (:func:`training.practice.table.trusted`) and ``in_figure``;
* ``figure6_batch.png/.csv``  top-1 vs batch size (LARS, lr = 0.3 x batch/256), one line per variant;
* ``figure7_lr.png/.csv``     top-1 vs learning rate, LARS and SGD panels, batch 256;
* ``collapse.png/.csv``       end-of-run mu, ||sum c_i||, s_k/s_1 and mean |cos| of the held-out class means vs
                              learning rate, both optimisers;
* ``eta_eff.png``             the per-step eta of the class means over training against the critical rate;
* ``lambda.csv``;
* ``claims.csv``         one record per claim (:func:`clop.claims.write_claims`, ids ``S5-<claim>``), the form
                         every study of the suite writes and its REPORT.md is generated from;
* ``findings.csv``       every finding of every claim (interval, verdict, margin, resolution, Holm family);
* ``practice.md``        each claim with the paper's words, what was measured, intervals, margins, verdicts.

Every figure is drawn (:mod:`training.practice.figures`) from the frame written as its CSV (the ``values`` /
``seeds`` columns hold each seed's value: the dots); points are the mean over seeds with the 95 % Student-t
interval as bars. All files are staged and put in place together (clop.util.io.staged_outputs): an interrupted
report leaves the previous one intact. ``--report-only`` with no finished runs redraws from
``practice_runs.csv`` and ``eta_eff.csv`` of a previous report. The grid (:class:`training.practice.grid.Grid`)
says which runs make each figure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from clop.claims import Claim as Record
from clop.claims import write_claims
from clop.stats import DECISION_MARGIN_SE, MIN_PAIRS, one_sided_level, paired_gain
from clop.util.io import atomic_write_text, check_output_dir, staged_outputs
from training.engine.rundir import CHECKPOINT, CONFIG, GEOMETRY, METRICS, PROBE_RESULT
from training.eval.evaluate import GEOM_COLUMNS
from training.eval.geometry import MIN_R2_STEP, critical_lr
from training.practice import claims as PC
from training.practice import figures as PF
from training.practice.endgeom import END_COLUMNS, run_end_geometry
from training.practice.grid import STUDY, Grid
from training.practice.run import diverged
from training.practice.table import CHANCE, ETA_COLUMNS, RUN_COLUMNS, TOP1_RESOLUTION_PP, K, check_runs, trusted
from training.sweeps.grid import VARIANTS, Point
from training.sweeps.results import variant_label
from training.sweeps.state import status

RUNS_CSV = "practice_runs.csv"
ETA_CSV = "eta_eff.csv"
FINDINGS_CSV = "findings.csv"
CLAIMS_CSV = "claims.csv"
END_CACHE = "end_geometry.json"
REPORT_FILES = (RUNS_CSV, ETA_CSV, "figure6_batch.png", "figure6_batch.csv", "figure7_lr.png", "figure7_lr.csv",
                "collapse.png", "collapse.csv", "eta_eff.png", "lambda.csv", CLAIMS_CSV, FINDINGS_CSV, "practice.md",
                "seed_blocks.csv", "seed_blocks.md")
"""Every file :func:`report` (or the seed-block study) may write."""
ETA_FIGURE_LRS = (0.1, 1.0, 10.0, 30.0)
COMMAND = "python -m training.practice"


# ----------------------------------------------------------------------------------------------------
# Collecting
# ----------------------------------------------------------------------------------------------------


def _label(variant: str, lam: float, reference: bool = False) -> str:
    v = VARIANTS[variant]
    if reference:
        return f"untrained encoder ({100 * v.label_fraction:g}% labels)"
    name = variant_label(v.loss, v.label_fraction, lam, v.prototypes)
    return name if math.isclose(lam, v.clop_lambda) else f"{name}, λ = {lam:g}"


def end_geometry(run: Path, div: bool) -> dict[str, float]:
    """The end-of-run geometry of ``run`` (:func:`training.practice.endgeom.run_end_geometry`), read from
    ``RUN/end_geometry.json`` when that is newer than the checkpoint, else computed and kept there; NaN for a
    diverged run."""
    if div:
        return {c: math.nan for c in END_COLUMNS}
    cache = run / END_CACHE
    if cache.is_file() and cache.stat().st_mtime_ns >= (run / CHECKPOINT).stat().st_mtime_ns:
        try:
            saved = json.loads(cache.read_text())
            if set(saved) == set(END_COLUMNS):
                return {c: math.nan if saved[c] is None else float(saved[c]) for c in END_COLUMNS}
        except (OSError, ValueError):
            pass
    out = run_end_geometry(run)
    atomic_write_text(cache, json.dumps({c: (None if not math.isfinite(v) else v) for c, v in out.items()}))
    return out


def collect(points: Sequence[Point], grid: Grid = STUDY) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """(runs, eta, counts) from the run directories of ``points``: finished (probed) and diverged runs;
    ``counts`` = planned, done, diverged, missing."""
    rows, etas = [], []
    counts = {"planned": len(points), "done": 0, "diverged": 0, "missing": 0}
    for p in points:
        run = p.run_dir
        div = diverged(run)
        if not div and status(run) != "done":
            counts["missing"] += 1
            continue
        counts["diverged" if div else "done"] += 1
        cfg = json.loads((run / CONFIG).read_text())
        try:  # a run that diverged in its first epoch has no metrics row
            metrics = pd.read_csv(run / METRICS)
        except (OSError, ValueError):
            metrics = pd.DataFrame()
        if metrics.empty:
            metrics = pd.DataFrame([{c: math.nan for c in ("loss", "contrastive", *GEOM_COLUMNS)}])
        reference = math.isclose(float(cfg["base_lr"]), grid.reference_lr)
        lr = float(cfg["base_lr"]) * int(cfg["batch_size"]) / 256
        row = {"run": run.name, "variant": p.variant, "label": _label(p.variant, float(cfg["clop_lambda"]), reference),
               "reference": reference, **{k: cfg[k] for k in ("loss", "label_fraction", "clop_lambda", "prototypes",
                                                             "optimizer", "batch_size", "base_lr", "seed", "epochs")},
               "lr": lr, "diverged": div}
        if div:
            row.update(top1=CHANCE, top5=math.nan)
        else:
            res = json.loads((run / PROBE_RESULT).read_text())
            row.update(top1=res["top1"], top5=res["top5"])
        first, last = metrics.iloc[0], metrics.iloc[-1]
        row.update(loss_first=first["loss"], loss_last=last["loss"], contrastive_first=first["contrastive"],
                   contrastive_last=last["contrastive"])
        row.update({c: last.get(c, math.nan) for c in GEOM_COLUMNS})
        row.update(end_geometry(run, div))
        rows.append(row)
        if (run / GEOMETRY).is_file():
            g = pd.read_csv(run / GEOMETRY).rename(columns={"lr": "step_lr"})
            for k in ("run", "variant", "optimizer", "batch_size", "lr", "clop_lambda", "seed", "reference"):
                g[k] = row[k]
            etas.append(g)
    runs = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    eta = pd.concat(etas, ignore_index=True) if etas else pd.DataFrame(columns=[c for c in ETA_COLUMNS if c != "trusted"])
    eta["trusted"] = trusted(eta) if len(eta) else pd.Series(dtype=bool)
    eta = eta[list(ETA_COLUMNS)]
    return runs, eta, counts


def load_csvs(out: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tables of a previous report in ``out``; ValueError naming a missing or malformed file."""
    out = Path(out)
    frames = []
    for name, cols in ((RUNS_CSV, RUN_COLUMNS), (ETA_CSV, ETA_COLUMNS)):
        path = out / name
        if not path.is_file():
            raise ValueError(f"--out {str(out)!r} has no {name} to redraw from, and --runs holds no finished run of "
                             "this grid; run the study first (python -m training.practice)")
        try:
            f = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path} cannot be read as a CSV ({exc})") from None
        missing = [c for c in cols if c not in f.columns]
        if missing:
            raise ValueError(f"{path} lacks the column(s) {missing}; it is not a CSV written by training.practice")
        frames.append(f)
    runs = check_runs(frames[0], str(out / RUNS_CSV))
    eta = frames[1]
    eta["reference"] = eta["reference"].map(lambda x: str(x).strip().lower() in ("true", "1", "1.0")).astype(bool)
    eta["trusted"] = trusted(eta) if len(eta) else pd.Series(dtype=bool)
    return runs, eta[list(ETA_COLUMNS)]


# ----------------------------------------------------------------------------------------------------
# Figure data
# ----------------------------------------------------------------------------------------------------


def _summary(values: pd.Series) -> dict:
    v = values.dropna()
    g = paired_gain(v.to_numpy()) if len(v) else None
    return {"n": len(v), "mean": g.mean if g else math.nan, "low": g.low if g and g.n > 1 else math.nan,
            "high": g.high if g and g.n > 1 else math.nan}


def summarise(runs: pd.DataFrame, keys: list[str], column: str, scale: float = 1.0) -> pd.DataFrame:
    """Per group of ``keys``: n, seeds and per-seed values (';'-separated, in seed order), mean and 95 %
    t-interval of ``column`` x ``scale``, and how many (which seeds) of the runs diverged."""
    out = []
    for key, f in runs.groupby(keys, sort=True, dropna=False):
        f = f.sort_values("seed")
        vals = f[column].astype(float) * scale
        s = _summary(vals)
        out.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "n": s["n"],
                    "seeds": ";".join(str(int(x)) for x in f["seed"]),
                    "values": ";".join("" if not np.isfinite(x) else f"{x:.6g}" for x in vals),
                    "mean": s["mean"], "low": s["low"], "high": s["high"], "diverged": int(f["diverged"].sum()),
                    "diverged_seeds": ";".join(str(int(x)) for x in f.loc[f["diverged"], "seed"])})
    return pd.DataFrame(out, columns=[*keys, "n", "seeds", "values", "mean", "low", "high", "diverged", "diverged_seeds"])


def _six(runs: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """Runs of the six Sec. 5 variants at their own lambda (not the reference, not the lambda axis)."""
    own = runs["variant"].map(lambda v: VARIANTS[v].clop_lambda if v in VARIANTS else math.nan)
    return runs[~runs["reference"] & runs["variant"].isin(grid.variants) & np.isclose(runs["clop_lambda"], own)]


def _with_references(data: pd.DataFrame, refs: pd.DataFrame) -> pd.DataFrame:
    data = data.assign(kind="variant")
    return pd.concat([data, refs.assign(kind="reference")], ignore_index=True) if len(refs) else data


def figure6_data(runs: pd.DataFrame, grid: Grid = STUDY) -> pd.DataFrame:
    six = _six(runs, grid)
    rows = six[(six["optimizer"] == "lars") & np.isclose(six["base_lr"], grid.batch_base_lr)]
    data = summarise(rows, ["variant", "label", "batch_size", "lr"], "top1", 100.0)
    refs = summarise(runs[runs["reference"]], ["variant", "label", "batch_size", "lr"], "top1", 100.0)
    return _with_references(data, refs)


def figure7_data(runs: pd.DataFrame, grid: Grid = STUDY) -> pd.DataFrame:
    six = _six(runs, grid)
    rows = six[six["batch_size"] == grid.lr_batch]
    data = summarise(rows, ["optimizer", "variant", "label", "lr"], "top1", 100.0)
    refs = summarise(runs[runs["reference"]], ["optimizer", "variant", "label", "lr"], "top1", 100.0)
    return _with_references(data, refs)


def collapse_data(runs: pd.DataFrame, grid: Grid = STUDY) -> pd.DataFrame:
    six = _six(runs, grid)
    rows = six[(six["batch_size"] == grid.lr_batch) & ~six["diverged"]]
    refs = runs[runs["reference"]]
    parts = []
    for key, _ in PF.FIGURE_METRICS:
        d = summarise(rows, ["optimizer", "variant", "label", "lr"], f"end_{key}")
        r = summarise(refs, ["optimizer", "variant", "label", "lr"], f"end_{key}")
        parts.append(_with_references(d, r).assign(metric=key))
    data = pd.concat(parts, ignore_index=True)
    return data[["metric", *[c for c in data.columns if c != "metric"]]]


def lambda_data(runs: pd.DataFrame, grid: Grid = STUDY) -> pd.DataFrame:
    rows = runs[~runs["reference"] & runs["variant"].isin(grid.ablation) & (runs["optimizer"] == "lars")
                & (runs["batch_size"] == grid.lr_batch) & np.isclose(runs["base_lr"], grid.batch_base_lr)]
    data = summarise(rows, ["variant", "clop_lambda"], "top1", 100.0)
    data.insert(1, "label", [_label(v, 1.0) for v in data["variant"]])
    return data


def eta_figure_mask(eta: pd.DataFrame, grid: Grid = STUDY) -> pd.Series:
    """The intervals drawn: the two baselines at batch 256, lrs :data:`ETA_FIGURE_LRS` (every lr present when
    none of those is), the smallest seed."""
    m = eta["variant"].isin(PC.BASELINES) & ~eta["reference"] & (eta["batch_size"] == grid.lr_batch)
    m &= np.isclose(eta["clop_lambda"].astype(float), 0.0)
    preferred = eta["lr"].astype(float).map(lambda x: any(math.isclose(x, v) for v in ETA_FIGURE_LRS))
    if (m & preferred).any():  # else (a partial grid) every lr present
        m &= preferred
    if m.any():
        m &= eta["seed"] == eta.loc[m, "seed"].min()
    return m


# ----------------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------------


def _num(x: float, digits: int = 3) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def _deciding(c: PC.Claim) -> list:
    return [f for f in c.findings if f.role == "verdict"]


def deciding(c: PC.Claim):
    """The finding that decides the claim's verdict: for ``holds`` the verdict finding nearest to flipping (the
    smallest margin), for ``fails`` the failing finding farthest from flipping; else None."""
    if c.verdict == "holds":
        mine = [f for f in _deciding(c) if f.verdict == "holds"]
        return min(mine, key=lambda f: f.margin) if mine else None
    if c.verdict == "fails":
        mine = [f for f in _deciding(c) if f.verdict == "fails"]
        return max(mine, key=lambda f: f.margin) if mine else None
    return None


def _deciding_text(c: PC.Claim) -> str:
    f = deciding(c)
    return "—" if f is None else f"{f.scope}: {f.measured}: {f.interval_text()}, margin {f.margin_text()}"


def _one_line(c: PC.Claim) -> str:
    """The claim's result for its record: the summary and its deciding findings with interval, n and margin."""
    parts = [f"{f.scope}: {f.interval_text()}, {f.verdict}, margin {f.margin_text()}" for f in _deciding(c)]
    text = c.summary + (" Findings: " + "; ".join(parts) + "." if parts else "")
    return " ".join(text.split())


def _claim_md(i: int, c: PC.Claim) -> list[str]:
    lines = [f"### {i}. {c.key}: **{c.verdict}**", "", f"> \"{c.quote}\" — {c.source}", "",
             f"**Tested:** {c.test}", "", f"**Result:** {c.summary}", "",
             f"**Multiple comparisons:** {c.families}.", "",
             "| scope | measured | mean [95 % interval] (n) | verdict | margin | reason |", "|---|---|---|---|---|---|"]
    for f in c.findings:
        tag = {"context": " *(context)*", "precondition": " *(precondition)*"}.get(f.role, "")
        floor = " (spread floored at the resolution)" if f.floored else ""
        lines.append(f"| {f.scope} | {f.measured}{tag} | {f.interval_text()}{floor} | {f.verdict} | {f.margin_text()} | "
                     f"{f.reason} |")
    return lines + [""]


def _seed_counts(runs: pd.DataFrame, grid: Grid) -> str:
    """How many seeds the points have: "12 seeds at 480 runs ..."."""
    counts = runs[~runs["reference"] | runs["reference"]].groupby(
        ["variant", "optimizer", "batch_size", "lr", "clop_lambda", "reference"])["seed"].nunique()
    spread = counts.value_counts().sort_index(ascending=False)
    return ", ".join(f"{int(n)} seed(s) at {int(m)} point(s)" for n, m in spread.items()) or "no runs"


def _what_ran(runs: pd.DataFrame, counts: dict[str, int], grid: Grid) -> list[str]:
    """The title and the "What ran" section of practice.md."""
    epochs = ", ".join(str(int(e)) for e in sorted(set(runs["epochs"]))) or "—"
    refs = summarise(runs[runs["reference"]], ["label"], "top1", 100.0)
    ref_text = "; ".join(f"{r.label}: {_num(r.mean)} % [{_num(r.low)}, {_num(r.high)}] (n = {r.n})"
                         for r in refs.itertuples()) or "not run"
    return [
        "# Section 5 in miniature: CLOP on 8×8 digits, on a CPU", "",
        "Paper: \"Preventing collapse in contrastive learning with orthonormal prototypes\" (CLOP), arXiv 2403.18699. "
        f"Written by `{COMMAND}` (module `training.practice`); `{COMMAND} --report-only` redraws it. Every number and "
        f"verdict below is computed from `{RUNS_CSV}` and `{ETA_CSV}`; docs/practice.md explains the design.", "",
        "## What ran", "",
        f"- {counts.get('done', 0)} runs probed, {counts.get('diverged', 0)} diverged (non-finite loss), "
        f"{counts.get('missing', 0)} of the {counts.get('planned', 0)} planned not (yet) finished; epochs: {epochs}. "
        f"Seeds: {_seed_counts(runs, grid)} (the points that carry a verdict have the most).",
        "- Data and model: scikit-learn's 8×8 digits (fixed stratified split, 1,438 train / 359 test), `--arch small` "
        "(3 conv layers, 128-d features), SimCLR head 2048-2048-128, `digits` augmentation, warm-up of a tenth of the "
        "epochs then cosine decay, momentum 0.9, weight decay 1e-6, LARS trust 1e-3; the probe: training.linear_eval "
        "(100 epochs of SGD on frozen features, on the run's labeled fraction: 10 % for InfoNCE, all for SupCon).",
        f"- Learning-rate axis: lr ∈ {list(grid.lrs)} × {{LARS, SGD}} × the six variants of Sec. 5 at batch "
        f"{grid.lr_batch}. **Learning rate** = the rate the optimiser uses, base_lr × batch/256 (the peak of the "
        "schedule); at batch 256 it equals base_lr. SGD multiplies the gradient by it; LARS multiplies each layer's "
        "gradient by it times 1e-3 ‖w‖/‖g‖, so a LARS layer moves by ≈ lr × 1e-3 of its norm per step.",
        f"- Batch axis: batch ∈ {list(grid.batches)} at lr = 0.3 × batch/256 (the paper's rule), LARS. "
        f"λ axis: λ ∈ {list(grid.lambdas)} for InfoNCE + CLOP and SupCon + CLOP (LARS, batch 256, lr 0.3).",
        f"- Untrained-encoder reference (lr {grid.reference_lr:g}: weights stay at their initialisation, BatchNorm "
        f"statistics from the data): top-1 {ref_text}.",
        "- Not as in the paper: 8×8 digits and a 3-layer CNN instead of CIFAR-100 / ImageNet and ResNet-50, "
        f"{epochs} epoch(s) instead of 200, batch ≤ 512 instead of 2048 (1,438 training images), several seeds a point "
        "(the paper prints single numbers). Digits are easy: the untrained encoder's features already give the probe "
        "most of its accuracy, so accuracy differences are small; the geometry carries the collapse story.", "",
    ]


def _rules(claims: list[PC.Claim]) -> list[str]:
    """How verdicts are computed, with the rule's one-sided level at the n used."""
    ns = sorted({f.n for c in claims for f in _deciding(c) if f.n >= MIN_PAIRS})
    levels = ", ".join(f"{one_sided_level(n):.2g} at n = {n}" for n in ns) or "— (no finding has enough seeds)"
    return [
        "How verdicts are computed: each finding is a sample over seeds (paired by seed where two settings are "
        "compared: same seed = same initial weights, labeled subset and batch order) with its mean and 95 % Student-t "
        "interval (`clop.stats.paired_gain`, n − 1 degrees of freedom). The spread is floored at the measurement's "
        f"resolution: one test image for top-1 ({TOP1_RESOLUTION_PP:.3f} pp), the bootstrap standard deviation over "
        "the 359 test images for the geometry (`training.practice.endgeom`), so a sample whose spread is rounding "
        f"never decides. A verdict is decided only with at least {MIN_PAIRS} seeds and when the interval clears every "
        f"threshold that separates it from another verdict by {DECISION_MARGIN_SE:g} standard errors (`clop.stats`): "
        f"\"raises\" holds above 0 and beyond +{PC.NEGLIGIBLE_PP:g} pp, fails below 0 or within ±{PC.NEGLIGIBLE_PP:g} pp; "
        "a bound test holds on the claimed side of the bound; \"similar\" holds within ±tolerance. The margin beside a "
        "verdict is how far, in standard errors, the mean would have to move to change it (— where nothing can be "
        "decided). Within each claim, Holm's step-down correction is applied to the `fails` side of its verdict "
        "findings (the family size is printed with the claim); a `fails` that does not survive it is inconclusive. "
        f"The rule's effective one-sided error level at the n used: {levels} (the chance that an interval "
        "clears a threshold by the margin when the true mean sits on it). A claim holds when all its verdict "
        "findings hold; a mixture across the two optimisers, which the paper does not name, is inconclusive. "
        "Context rows inform and do not vote; a precondition row decides whether its cell can be tested. A diverged "
        f"run counts at chance top-1 ({100 * CHANCE:g} %) and is left out of geometry findings.", "",
    ]


def _verdicts(claims: list[PC.Claim]) -> list[str]:
    """The verdict table, how verdicts are computed, and each claim in full."""
    lines = ["## Verdicts", "", "| # | claim | verdict | deciding finding | result |", "|---|---|---|---|---|"]
    for i, c in enumerate(claims, 1):
        lines.append(f"| {i} | {c.key} | **{c.verdict}** | {_deciding_text(c)} | {c.summary} |")
    lines += ["", "The deciding finding of a claim that holds is its verdict finding nearest to flipping (the smallest "
              "margin); of a claim that fails, its failing finding farthest from flipping."]
    lines += [""] + _rules(claims) + ["## Claims", ""]
    for i, c in enumerate(claims, 1):
        lines += _claim_md(i, c)
    return lines


def _lambda_and_figures(eta: pd.DataFrame, lam: pd.DataFrame, written: dict[str, str]) -> list[str]:
    """The lambda table and the list of figures and data files."""
    lines = ["## λ ablation (Table 1 in miniature: LARS, batch 256, lr 0.3)", "",
             "| variant | λ | top-1 % mean [95 % interval] | n |", "|---|---|---|---|"]
    for r in lam.itertuples():
        lines.append(f"| {r.label} | {r.clop_lambda:g} | {_num(r.mean)} [{_num(r.low)}, {_num(r.high)}] | {r.n} |")
    if lam.empty:
        lines.append("| not run | | | |")
    n_fit = int(np.isfinite(pd.to_numeric(eta["eta_step"], errors="coerce")).sum()) if len(eta) else 0
    lines += ["", "## Figures and data", ""]
    captions = {
        "figure6_batch.png": "top-1 vs batch size (LARS, lr = 0.3 × batch/256; the lr is printed under each batch)",
        "figure7_lr.png": "top-1 vs learning rate used, LARS and SGD panels (batch 256)",
        "collapse.png": "end-of-run μ, ‖Σ c_i‖, s_k/s_1 and mean |cos| of the k unit class means of the held-out "
                        "embeddings vs learning rate, both optimisers, with and without CLOP (with their bootstrap "
                        "resolutions in practice_runs.csv)",
        "eta_eff.png": f"per-step η of the held-out class means (Appendix D fit, eta_step) over training for lr "
                       f"{', '.join(f'{x:g}' for x in ETA_FIGURE_LRS)}, baselines, one seed, against η_crit = "
                       f"{critical_lr(K):g}; below, the fit's R²_step (pooled when ≥ {MIN_R2_STEP:g}); all {n_fit} "
                       f"intervals with a per-step η are in {ETA_CSV}",
    }
    for png, caption in captions.items():
        data = written.get(png)
        lines.append(f"- `{png}`: {caption}; data `{data}`." if data else f"- `{png}`: not drawn (no runs of it yet).")
    lines += [f"- `{RUNS_CSV}`: every run's settings, top-1/top-5, first/last loss, last-epoch logged geometry and the "
              f"end-of-run geometry with its bootstrap resolution; `{FINDINGS_CSV}`: every finding above; "
              f"`{CLAIMS_CSV}`: one record per claim (the suite's REPORT.md reads it); `lambda.csv`: the λ table.", ""]
    return lines


def markdown(runs: pd.DataFrame, eta: pd.DataFrame, claims: list[PC.Claim], counts: dict[str, int], lam: pd.DataFrame,
             written: dict[str, str], grid: Grid = STUDY) -> str:
    """practice.md: what ran, the verdicts and each claim, the lambda table, the figures and data."""
    lines = _what_ran(runs, counts, grid) + _verdicts(claims) + _lambda_and_figures(eta, lam, written)
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------


def claim_records(claims: Sequence[PC.Claim]) -> list[Record]:
    """The suite's claim records (:class:`clop.claims.Claim`, ids ``S5-<claim>``) of the study's claims."""
    evidence = "practice/practice.md; practice/findings.csv; practice/practice_runs.csv; practice/eta_eff.csv"
    return [Record(f"S5-{c.key}", c.source, c.quote, c.test, c.verdict, _one_line(c), evidence, COMMAND)
            for c in claims]


def write_report(runs: pd.DataFrame, eta: pd.DataFrame, out: str | Path, counts: dict[str, int] | None = None,
                 grid: Grid = STUDY) -> list[Path]:
    """Draw every figure, CSV and practice.md from ``runs`` and ``eta`` into ``out``, all put in place together."""
    out = check_output_dir(out, "--out")
    runs = check_runs(runs)
    eta = eta.copy()
    eta["trusted"] = trusted(eta) if len(eta) else pd.Series(dtype=bool)
    eta["in_figure"] = eta_figure_mask(eta, grid) if len(eta) else pd.Series(dtype=bool)
    counts = counts or {"planned": len(runs), "done": int((~runs["diverged"]).sum()),
                        "diverged": int(runs["diverged"].sum()), "missing": 0}
    claims = PC.all_claims(runs, eta, lrs=grid.lrs, batches=grid.batches)
    epochs = "/".join(str(int(e)) for e in sorted(set(runs["epochs"]))) or "?"
    lam = lambda_data(runs, grid)
    written: dict[str, str] = {}
    with staged_outputs(out) as stage:
        runs.to_csv(stage(RUNS_CSV), index=False)
        eta.to_csv(stage(ETA_CSV), index=False)
        for png, csv, make, draw in (
            ("figure6_batch.png", "figure6_batch.csv", figure6_data, PF.plot_figure6),
            ("figure7_lr.png", "figure7_lr.csv", figure7_data, PF.plot_figure7),
            ("collapse.png", "collapse.csv", collapse_data, PF.plot_collapse),
        ):
            data = make(runs, grid)
            if not (data["kind"] == "variant").any():
                continue
            data.to_csv(stage(csv), index=False)
            draw(data, stage(png), epochs)
            written[png] = csv
        shown = eta[eta["in_figure"]] if len(eta) else eta
        if len(shown):
            PF.plot_eta(shown, stage("eta_eff.png"), epochs)
            written["eta_eff.png"] = f"{ETA_CSV} (rows with in_figure)"
        lam.to_csv(stage("lambda.csv"), index=False)
        PC.claims_frame(claims).to_csv(stage(FINDINGS_CSV), index=False)
        write_claims(stage(CLAIMS_CSV), claim_records(claims))
        stage("practice.md").write_text(markdown(runs, eta, claims, counts, lam, written, grid))
    names = [RUNS_CSV, ETA_CSV, "lambda.csv", FINDINGS_CSV, CLAIMS_CSV, "practice.md"]
    names += [n for png, csv in written.items() for n in (png, csv.split(" ")[0])]
    return sorted({out / n for n in names})


def report(points: Sequence[Point], out: str | Path, *, from_csv_if_empty: bool = False, grid: Grid = STUDY
           ) -> list[Path]:
    """Collect the runs of ``points`` and write the report; with ``from_csv_if_empty`` and no finished run,
    redraw from the CSVs of a previous report in ``out``. ValueError when there is nothing to report."""
    runs, eta, counts = collect(points, grid)
    if runs.empty:
        if not from_csv_if_empty:
            raise ValueError(f"no finished run of the {len(points)} points: nothing to report")
        runs, eta = load_csvs(out)
        counts = None
    return write_report(runs, eta, out, counts, grid)
