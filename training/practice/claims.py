"""The claims that the practice study tests, and their verdicts.

Paper: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP), arXiv 2403.18699.

Input: the study's per-run table (:data:`RUN_COLUMNS`, one row per finished or diverged run, written as
``practice_runs.csv`` by :mod:`training.practice.report`) and its per-interval Appendix D fits
(:data:`ETA_COLUMNS`, ``eta_eff.csv``). Output: :class:`Claim` objects, each with the paper's words, the
statement tested, its measured findings (mean over seeds with the 95 % Student-t interval of
:func:`clop.stats.paired_gain`) and a verdict computed from them, never typed.

How a verdict is reached. Every finding is one sample over seeds: a paired difference (same seed = same
initial weights, labeled subset and batch order) or a value against a bound. :func:`clop.stats.direction_verdict`
decides: ``holds`` when the 95 % interval lies on the claimed side of 0 (or of the bound) by more than
two standard errors, ``fails`` when it lies on the other side, or, for accuracy effects, entirely within
+-:data:`NEGLIGIBLE_PP` (an effect of no practical size), else ``inconclusive``; fewer than two seeds are
inconclusive. A claim's verdict combines its findings: :func:`all_of` (every finding holds; any failure
fails it) where the paper says "consistently" / "all", :func:`unanimous` (all hold, or all fail; a
mixture is inconclusive and the summary says where it holds) across optimisers, which the paper does not name.

Conventions: top-1 in percentage points (pp); a run whose loss became non-finite (``diverged``) has no
encoder to probe and counts at chance accuracy 1/k in accuracy findings (what a probe of NaN features
gives), and is left out of geometry findings (its last logged geometry is not its end state).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from clop.stats import direction_verdict, paired_gain
from training.eval.evaluate import COLLAPSE_MEAN_NORM, GEOM_COLUMNS
from training.eval.geometry import TABLE_KEYS, critical_lr
from training.sweeps.grid import VARIANTS
from training.sweeps.results import variant_label

K = 10
"""Classes of digits."""
CHANCE = 1.0 / K
NEGLIGIBLE_PP = 1.0
"""An accuracy effect inside +-1 pp (3.6 of the 359 test images) is of no practical size."""
TINY = 1e-12
"""The negligible band of bound tests: none (any side of the bound counts)."""
LR_LARGE = 10.0
LR_REF = 0.3
"""The paper's rate (0.3 x batch / 256 at batch 256): degradation at lr 10 is measured against it."""
BATCH_SMALL = 32
TRUST = {"r2": 0.9, "r2_step": 0.9, "s_min": 0.1}
"""An Appendix D fit is trusted when r2 and r2_step are near 1 and s_min is away from the pole
(training.eval.geometry's docstring)."""
MIN_TRUSTED = 0.5
"""Below this fraction of trusted intervals the Appendix D model is taken not to describe the dynamics."""
BASELINES = ("infonce10", "supcon100")
PAIRS = (("infonce10", "infonce10-clop"), ("supcon100", "supcon100-clop"))
OPT_NAMES = {"lars": "LARS", "sgd": "SGD"}

RUN_COLUMNS = (
    "run", "variant", "label", "reference", "loss", "label_fraction", "clop_lambda", "prototypes", "optimizer",
    "batch_size", "base_lr", "lr", "seed", "epochs", "diverged", "top1", "top5", "loss_first", "loss_last",
    "contrastive_first", "contrastive_last", *GEOM_COLUMNS,
)
"""Columns of the per-run table; ``top1`` is the probe's, or :data:`CHANCE` for a diverged run; ``geom_*`` are
the last epoch's (metrics.csv)."""
ETA_COLUMNS = ("run", "variant", "optimizer", "batch_size", "lr", "clop_lambda", "seed", "reference", "epoch", "step",
               "step_lr", *TABLE_KEYS, "trusted")
"""Columns of the per-interval fits: the run's settings, then geometry.csv's row (its ``lr`` as ``step_lr``)."""


@dataclasses.dataclass(frozen=True)
class Finding:
    """One measured quantity over seeds: mean and 95 % interval of the raw values (bound tests) or of the
    paired differences; ``role`` "verdict" findings decide the claim, "context" ones only inform."""

    scope: str
    measured: str
    unit: str
    n: int
    mean: float
    low: float
    high: float
    verdict: str
    reason: str
    role: str = "verdict"

    def interval_text(self, digits: int = 3) -> str:
        if self.n == 0:
            return "no runs"
        f = f"{{:.{digits}g}}"
        if self.n < 2 or not math.isfinite(self.low):
            return f"{f.format(self.mean)}{self.unit} (n = {self.n})"
        return f"{f.format(self.mean)}{self.unit} [{f.format(self.low)}, {f.format(self.high)}] (n = {self.n})"


@dataclasses.dataclass
class Claim:
    """A claim: the paper's words and where, the statement tested, findings, verdict and a computed summary."""

    key: str
    quote: str
    source: str
    test: str
    findings: list[Finding]
    verdict: str
    summary: str


# ----------------------------------------------------------------------------------------------------
# Findings
# ----------------------------------------------------------------------------------------------------


def _finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    return a[np.isfinite(a)]


def judge_diff(scope: str, measured: str, diffs, *, negligible: float = NEGLIGIBLE_PP, unit: str = " pp",
               role: str = "verdict") -> Finding:
    """"The difference is positive": :func:`clop.stats.direction_verdict` on the paired differences."""
    d = _finite(diffs)
    if d.size < 2:
        return Finding(scope, measured, unit, int(d.size), float(d.mean()) if d.size else math.nan, math.nan, math.nan,
                       _role_verdict("inconclusive", role), f"{d.size} seed(s): an interval needs at least 2", role)
    g = paired_gain(d)
    verdict, reason = direction_verdict(g, negligible, unit=unit.strip())
    reason = reason.replace("the change lowers it", "the difference is negative")
    return Finding(scope, measured, unit, g.n, g.mean, g.low, g.high, _role_verdict(verdict, role), reason, role)


def judge_bound(scope: str, measured: str, values, bound: float, *, above: bool = True, unit: str = "",
                role: str = "verdict") -> Finding:
    """"The values lie above ``bound``" (``above``) or below it: direction_verdict on values - bound (or
    bound - values) without a negligible band; mean and interval reported for the values themselves."""
    v = _finite(values)
    side = "above" if above else "below"
    if v.size < 2:
        return Finding(scope, measured, unit, int(v.size), float(v.mean()) if v.size else math.nan, math.nan, math.nan,
                       _role_verdict("inconclusive", role), f"{v.size} seed(s): an interval needs at least 2", role)
    g = paired_gain(v - bound if above else bound - v)
    verdict, why = direction_verdict(g, TINY)
    s = paired_gain(v)
    if verdict == "holds":
        reason = f"the interval lies {side} {bound:.4g}"
    elif verdict == "fails":
        reason = f"the interval lies {'below' if above else 'above'} {bound:.4g}"
    else:
        reason = why.replace(" 0", f" {bound:.4g}")
    return Finding(scope, measured, unit, s.n, s.mean, s.low, s.high, _role_verdict(verdict, role), reason, role)


def _role_verdict(verdict: str, role: str) -> str:
    if role not in ("verdict", "context"):
        raise ValueError(f"role={role!r}: expected 'verdict' or 'context'")
    return verdict if role == "verdict" else "—"


def all_of(verdicts: Sequence[str]) -> str:
    """holds if every verdict holds, fails if any fails, else (or with none) inconclusive."""
    verdicts = list(verdicts)
    if verdicts and all(v == "holds" for v in verdicts):
        return "holds"
    return "fails" if "fails" in verdicts else "inconclusive"


def unanimous(verdicts: Sequence[str]) -> str:
    """holds if every verdict holds, fails if every one fails, else (or with none) inconclusive."""
    verdicts = list(verdicts)
    if verdicts and all(v == "holds" for v in verdicts):
        return "holds"
    if verdicts and all(v == "fails" for v in verdicts):
        return "fails"
    return "inconclusive"


# ----------------------------------------------------------------------------------------------------
# Selecting runs
# ----------------------------------------------------------------------------------------------------


def check_runs(runs: pd.DataFrame, name: str = "runs") -> pd.DataFrame:
    """``runs`` with typed columns; ValueError naming the missing columns."""
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; expected the columns of practice_runs.csv: "
                         f"{list(RUN_COLUMNS)}")
    out = runs.copy()
    for c in ("reference", "diverged"):
        out[c] = out[c].map(lambda x: str(x).strip().lower() in ("true", "1", "1.0")).astype(bool)
    for c in RUN_COLUMNS:
        if c not in ("run", "variant", "label", "loss", "prototypes", "optimizer", "reference", "diverged"):
            out[c] = pd.to_numeric(out[c], errors="coerce")
    return out


def pick(runs: pd.DataFrame, variant: str, optimizer: str, batch: int, lr: float, lam: float | None = None) -> pd.DataFrame:
    """The runs of one point (not the reference), indexed by seed (the first row of a seed)."""
    lam = VARIANTS[variant].clop_lambda if lam is None else lam
    m = ((runs["variant"] == variant) & ~runs["reference"] & (runs["optimizer"] == optimizer)
         & (runs["batch_size"] == batch) & np.isclose(runs["lr"], lr, rtol=1e-6, atol=0)
         & np.isclose(runs["clop_lambda"], lam, rtol=1e-9, atol=1e-12))
    return runs[m].drop_duplicates("seed").set_index("seed").sort_index()


def reference(runs: pd.DataFrame, variant: str) -> pd.DataFrame:
    """The untrained-encoder reference runs with the labels of ``variant``'s family, indexed by seed."""
    fam = VARIANTS[variant]
    m = (runs["reference"] & (runs["loss"] == fam.loss)
         & np.isclose(runs["label_fraction"], fam.label_fraction, rtol=1e-9, atol=0))
    return runs[m].drop_duplicates("seed").set_index("seed").sort_index()


def _pp(frame: pd.DataFrame) -> pd.Series:
    return 100.0 * frame["top1"]


def _paired(*series: pd.Series) -> list[pd.Series]:
    seeds = sorted(set.intersection(*(set(s.index) for s in series))) if series else []
    return [s.loc[seeds] for s in series]


def _geom(frame: pd.DataFrame, key: str) -> pd.Series:
    return frame.loc[~frame["diverged"], f"geom_{key}"]


def variant_name(variant: str) -> str:
    """The legend label of a :data:`training.sweeps.grid.VARIANTS` key (e.g. ``InfoNCE 10% + CLOP``)."""
    v = VARIANTS[variant]
    return variant_label(v.loss, v.label_fraction, v.clop_lambda, v.prototypes)


def _div_note(frame: pd.DataFrame) -> str:
    n = int(frame["diverged"].sum()) if len(frame) else 0
    return f" ({n} diverged)" if n else ""


# ----------------------------------------------------------------------------------------------------
# The claims
# ----------------------------------------------------------------------------------------------------


def claim_collapse(runs: pd.DataFrame, lrs: Sequence[float]) -> Claim:
    findings, per_opt, onset = [], {}, {}
    for opt in ("lars", "sgd"):
        verdicts = []
        for b in BASELINES:
            big = pick(runs, b, opt, 256, LR_LARGE)
            f = judge_bound(f"{OPT_NAMES[opt]}, {variant_name(b)}{_div_note(big)}", f"μ at lr {LR_LARGE:g}", _geom(big, "mu_norm"),
                            COLLAPSE_MEAN_NORM)
            findings.append(f)
            verdicts.append(f.verdict)
            ref = pick(runs, b, opt, 256, LR_REF)
            a, c = _paired(_pp(big), _pp(ref))
            findings.append(judge_diff(f"{OPT_NAMES[opt]}, {variant_name(b)}", f"top-1 at lr {LR_LARGE:g} − at lr {LR_REF:g}",
                                       a - c, role="context"))
        per_opt[opt] = all_of(verdicts)
        first = None
        for lr in sorted(lrs):
            mus = [_geom(pick(runs, b, opt, 256, lr), "mu_norm") for b in BASELINES]
            if all(len(m) for m in mus) and all((m >= COLLAPSE_MEAN_NORM).all() for m in mus):
                first = lr
                break
        onset[opt] = "none on the grid" if first is None else f"lr {first:g}"
    verdict = unanimous(list(per_opt.values()))
    summary = "; ".join(f"with {OPT_NAMES[o]}: {v}" for o, v in per_opt.items())
    summary += ". First grid lr at which every seed of both baselines ends completely collapsed (μ ≥ 0.999): " + \
        ", ".join(f"{OPT_NAMES[o]} {onset[o]}" for o in per_opt) + "."
    return Claim(
        "collapse-lr10",
        "excessively large learning rates can lead to complete collapse, as clearly observed in the baseline methods "
        "at a learning rate of 10",
        "Sec. 5, 'CLOP Prevents Collapse with Large Learning Rates' (Fig. 7)",
        f"At lr {LR_LARGE:g} (batch 256) both baselines end completely collapsed: μ, the norm of the mean unit "
        f"embedding of the 359 held-out test images after the last epoch (Theorem 1's μ), lies above {COLLAPSE_MEAN_NORM} "
        "(training.pretrain's collapse criterion). Per optimiser: both baselines must hold; overall: both optimisers.",
        findings, verdict, summary)


def claim_degradation(runs: pd.DataFrame) -> Claim:
    findings, per_opt = [], {}
    for opt in ("lars", "sgd"):
        verdicts = []
        for base, clop in PAIRS:
            frames = [pick(runs, v, opt, 256, lr) for v in (base, clop) for lr in (LR_REF, LR_LARGE)]
            b0, b1, c0, c1 = _paired(*(_pp(f) for f in frames))
            f = judge_diff(f"{OPT_NAMES[opt]}, {variant_name(base)} vs + CLOP", f"(top-1 lr {LR_REF:g} − lr {LR_LARGE:g}): "
                           "baseline minus CLOP", (b0 - b1) - (c0 - c1))
            findings.append(f)
            verdicts.append(f.verdict)
            etf = clop + "-etf"
            e0, e1, bb0, bb1 = _paired(*(_pp(pick(runs, v, opt, 256, lr)) for v in (etf, base) for lr in (LR_REF, LR_LARGE)))
            findings.append(judge_diff(f"{OPT_NAMES[opt]}, {variant_name(base)} vs + CLOP (ETF)", f"(top-1 lr {LR_REF:g} − lr "
                                       f"{LR_LARGE:g}): baseline minus CLOP (ETF)", (bb0 - bb1) - (e0 - e1), role="context"))
        per_opt[opt] = all_of(verdicts)
    return Claim(
        "clop-degradation",
        "with the incorporation of CLOP into the loss function, we observe a significantly smaller performance "
        "degradation",
        "Sec. 5, 'CLOP Prevents Collapse with Large Learning Rates' (Fig. 7)",
        f"Top-1 falls less from lr {LR_REF:g} to lr {LR_LARGE:g} with CLOP (orthonormal prototypes, λ = 1) than without: "
        f"per seed, the baseline's drop minus the CLOP variant's drop lies above 0 and outside ±{NEGLIGIBLE_PP:g} pp "
        "(batch 256). Per optimiser: both losses must hold.",
        findings, unanimous(list(per_opt.values())), "; ".join(f"with {OPT_NAMES[o]}: {v}" for o, v in per_opt.items()) + ".")


def claim_batch(runs: pd.DataFrame, batches: Sequence[int]) -> Claim:
    findings = []
    for b in batches:
        lr = 0.3 * b / 256
        for base, clop in PAIRS:
            c, a = _paired(_pp(pick(runs, clop, "lars", b, lr)), _pp(pick(runs, base, "lars", b, lr)))
            findings.append(judge_diff(f"batch {b} (lr {lr:.4g}), {variant_name(base)}", "top-1 with CLOP − without", c - a))
    verdict = all_of([f.verdict for f in findings])
    counts = {v: sum(f.verdict == v for f in findings) for v in ("holds", "fails", "inconclusive")}
    return Claim(
        "clop-all-batches",
        "CLOP consistently outperformed the baseline methods across all batch sizes",
        "Sec. 5, 'CLOP Enables Smaller Batch Sizes' (Fig. 6)",
        f"At every batch size (LARS, lr = 0.3 × batch/256), top-1 with CLOP (orthonormal, λ = 1) minus without, paired "
        f"by seed, lies above 0 and outside ±{NEGLIGIBLE_PP:g} pp, for both losses.",
        findings, verdict, f"{counts['holds']} of {len(findings)} batch/loss cells hold, {counts['fails']} fail, "
        f"{counts['inconclusive']} inconclusive.")


def claim_batch32(runs: pd.DataFrame, batches: Sequence[int]) -> Claim:
    top = max(batches) if len(batches) else 512
    findings = []
    for base, clop in PAIRS:
        c, a = _paired(_pp(pick(runs, clop, "lars", BATCH_SMALL, 0.3 * BATCH_SMALL / 256)),
                       _pp(pick(runs, base, "lars", top, 0.3 * top / 256)))
        findings.append(judge_bound(f"{variant_name(clop)} at batch {BATCH_SMALL} vs {variant_name(base)} at batch {top}",
                                    "top-1 difference", c - a, -NEGLIGIBLE_PP, unit=" pp",
                                    role="verdict" if base == "supcon100" else "context"))
    verdict = findings[1].verdict
    return Claim(
        "clop-batch32",
        "Remarkably, CLOP achieved similar accuracy with a batch size of 32 compared to the baseline SupCon with a "
        "batch size of 2048 for CIFAR-100.",
        "Sec. 5, 'CLOP Enables Smaller Batch Sizes' (Fig. 6)",
        f"SupCon + CLOP at batch {BATCH_SMALL} is at least as accurate, within {NEGLIGIBLE_PP:g} pp, as SupCon without "
        f"CLOP at the largest batch here ({top}; the paper's 2048 exceeds the 1,438 training images): per seed the "
        f"top-1 difference lies above −{NEGLIGIBLE_PP:g} pp. The InfoNCE pair is context.",
        findings, verdict, f"SupCon + CLOP at {BATCH_SMALL} minus SupCon at {top}: {findings[1].interval_text()}.")


def _loss_best_lr(runs: pd.DataFrame, variant: str, opt: str, lrs: Sequence[float]) -> float | None:
    """The grid lr where the variant's mean final contrastive loss is lowest (diverged runs left out)."""
    best, where = math.inf, None
    for lr in lrs:
        f = pick(runs, variant, opt, 256, lr)
        vals = _finite(f.loc[~f["diverged"], "contrastive_last"])
        if vals.size and vals.mean() < best:
            best, where = float(vals.mean()), lr
    return where


def claim_geometry(runs: pd.DataFrame, lrs: Sequence[float], *, clop: bool) -> Claim:
    findings, per_opt = [], {}
    for opt in ("lars", "sgd"):
        verdicts = []
        for base, with_clop in PAIRS:
            lr = _loss_best_lr(runs, base, opt, lrs)
            v = with_clop if clop else base
            f = pick(runs, v, opt, 256, lr) if lr is not None else runs.iloc[:0].set_index("seed")
            scope = f"{OPT_NAMES[opt]}, {variant_name(v)}, lr {lr:g}" if lr is not None else f"{OPT_NAMES[opt]}, {variant_name(v)}, lr —"
            gap = _geom(f, "class_cos_gap_etf") - _geom(f, "class_cos_gap_orth")
            sr = _geom(f, "class_stable_rank")
            if clop:
                mine = [judge_bound(scope, "abs(cos) − abs(cos + 1/(k−1)), mean pairwise cosine (< 0: nearer orthogonal "
                                    "than ETF)", -gap, 0.0, above=False),
                        judge_bound(scope, "stable rank of the class means", sr, K - 0.5),
                        judge_bound(scope, "cosine of class mean to own prototype", _geom(f, "class_proto_cos"), 0.0,
                                    role="context")]
            else:
                mine = [judge_bound(scope, "abs(cos + 1/(k−1)) − abs(cos), mean pairwise cosine (< 0: nearer ETF than "
                                    "orthogonal)", gap, 0.0, above=False),
                        judge_bound(scope, "stable rank of the class means, ≥ k − 1.5", sr, K - 1.5),
                        judge_bound(scope, "stable rank of the class means, ≤ k − 0.5", sr, K - 0.5, above=False)]
            mine += [judge_bound(scope, "norm of the sum of the unit class means (0 ETF, √k orthonormal, k collapse)",
                                 _geom(f, "class_sum_norm"), math.sqrt(K), above=not clop, role="context"),
                     judge_bound(scope, "numerical rank of the class means", _geom(f, "class_rank"), K - 0.5,
                                 role="context")]
            findings += mine
            verdicts += [x.verdict for x in mine if x.role == "verdict"]
        per_opt[opt] = all_of(verdicts)
    for base, _ in PAIRS:  # how far training moved the geometry from the initialisation
        findings.append(judge_bound(f"untrained encoder ({variant_name(base)} labels)", "stable rank of the class means",
                                    _geom(reference(runs, base), "class_stable_rank"), K - 0.5, role="context"))
    verdict = unanimous(list(per_opt.values()))
    where = "at the grid lr (batch 256) where the baseline's mean final contrastive loss is lowest, per optimiser and loss"
    summary = "; ".join(f"with {OPT_NAMES[o]}: {v}" for o, v in per_opt.items()) + ". " + _geometry_summary(findings)
    if clop:
        return Claim(
            "clop-orthogonal",
            "the embeddings trained with CLOP show more distinct boundaries between classes, with each class being more "
            "orthogonal to the others",
            "Sec. 5 (synthetic data, Table 5); Sec. 4 (orthonormal prototypes)",
            f"With CLOP (orthonormal prototypes, λ = 1), {where}, the held-out unit class means are nearer to mutually "
            f"orthogonal than to a simplex ETF (mean pairwise cosine nearer 0 than −1/(k−1)) and their stable rank exceeds "
            f"k − 0.5 = {K - 0.5:g} (rank k). Per optimiser: both losses must hold.",
            findings, verdict, summary)
    return Claim(
        "baseline-simplex",
        "gradient descent consistently converges to a subspace of rank k − 1 ... forming a zero-mean subspace of rank k − 1",
        "Sec. 3.2 (Lemma 2, Fig. 4)",
        f"Without CLOP, {where}, the held-out unit class means sum to about 0 (mean pairwise cosine nearer −1/(k−1) "
        f"than 0, i.e. closer to a simplex ETF than to orthogonal) and have stable rank k − 1 ± 0.5 = "
        f"[{K - 1.5:g}, {K - 0.5:g}] (uncentred; k − 1 for an ETF, k orthonormal, 1 collapsed). Per optimiser: both "
        "losses must hold.",
        findings, verdict, summary)


def _geometry_summary(findings: list[Finding]) -> str:
    parts = []
    for f in findings:
        if f.measured.startswith("stable rank") and "≤" not in f.measured:
            parts.append(f"{f.scope}: stable rank {f.interval_text()}")
    return "; ".join(parts) + "."


def claim_small_batch(runs: pd.DataFrame) -> Claim:
    findings = []
    lr = 0.3 * BATCH_SMALL / 256
    for v in VARIANTS:
        small, ref = _paired(_pp(pick(runs, v, "lars", BATCH_SMALL, lr)), _pp(reference(runs, v)))
        findings.append(judge_diff(f"{variant_name(v)}, LARS batch {BATCH_SMALL} lr {lr:g}", "top-1 − untrained encoder's",
                                   small - ref))
    for v in VARIANTS:
        f = pick(runs, v, "lars", BATCH_SMALL, lr)
        f = f[~f["diverged"]]
        rel = 100.0 * (f["contrastive_last"] - f["contrastive_first"]) / f["contrastive_first"].abs()
        findings.append(judge_bound(f"{variant_name(v)}, LARS batch {BATCH_SMALL}", "contrastive loss, last epoch vs first (%)",
                                    rel, 0.0, above=False, unit=" %", role="context"))
    for v in VARIANTS:
        mid, ref = _paired(_pp(pick(runs, v, "lars", 256, LR_REF)), _pp(reference(runs, v)))
        findings.append(judge_diff(f"{variant_name(v)}, LARS batch 256 lr {LR_REF:g}", "top-1 − untrained encoder's", mid - ref,
                                   role="context"))
    main = [f for f in findings if f.role == "verdict"]
    verdict = unanimous([f.verdict for f in main])
    learns = [f.scope.split(",")[0] for f in main if f.verdict == "holds"]
    return Claim(
        "small-batch-lars",
        "with SimCLR's LARS (trust coefficient 1e-3) each layer moves by about lr × 1e-3 of its norm per step, so at batch "
        "32 the paper's lr = 0.3 × 32/256 gives steps of 4e-5 of the weights",
        "README (Sec. 5 note; the paper does not name its optimiser)",
        f"LARS at batch {BATCH_SMALL} with lr = 0.3 × {BATCH_SMALL}/256 = {lr:g} learns: per seed, its top-1 minus the "
        f"untrained encoder's (same seed and labels; lr {1e-6:g}) lies above 0 and outside ±{NEGLIGIBLE_PP:g} pp. All six "
        "variants hold: holds; none: fails. The loss change and batch 256 at lr 0.3 are context.",
        findings, verdict,
        f"{len(learns)} of {len(main)} variants beat the untrained encoder at batch {BATCH_SMALL}" +
        (f" ({', '.join(learns)})" if learns else "") + ".")


def trusted(eta: pd.DataFrame) -> pd.Series:
    """Intervals whose Appendix D fit is trusted (:data:`TRUST`) and has a finite per-step eta."""
    ok = np.isfinite(eta["eta_step"].astype(float))
    for key, low in TRUST.items():
        ok &= eta[key].astype(float) >= low
    return ok


def claim_bridge(runs: pd.DataFrame, eta: pd.DataFrame) -> Claim:
    crit = critical_lr(K)
    fits = eta[np.isfinite(eta["eta_eff"].astype(float))]
    ok = trusted(fits)
    frac = float(ok.mean()) if len(fits) else math.nan
    med_r2 = float(fits["r2"].median()) if len(fits) else math.nan
    med_r2s = float(fits["r2_step"].median()) if len(fits) else math.nan
    done = runs[~runs["diverged"]]
    collapsed = set(done.loc[done["geom_mu_norm"] >= COLLAPSE_MEAN_NORM, "run"])
    peak = fits[ok].groupby("run")["eta_step"].max()
    findings = []
    for name, members in (("collapsed runs (final μ ≥ 0.999)", collapsed),
                          ("other runs", set(done["run"]) - collapsed)):
        vals = peak[peak.index.isin(members)]
        findings.append(judge_bound(f"{name}: {len(members)} runs, {len(vals)} with a trusted fit",
                                    "largest trusted η per step (eta_step) of a run", vals, crit,
                                    role="verdict" if name.startswith("collapsed") else "context"))
    crossed_other = int((peak[peak.index.isin(set(done["run"]) - collapsed)] > crit).sum())
    quality = (f"{len(fits)} intervals with motion; median R² = {med_r2:.3g}, median R²_step = {med_r2s:.3g}; "
               f"{100 * frac:.0f} % pass r2 ≥ {TRUST['r2']}, r2_step ≥ {TRUST['r2_step']}, s_min ≥ {TRUST['s_min']}")
    if not len(fits) or frac < MIN_TRUSTED:
        verdict = "fails"
        summary = f"the Appendix D model does not describe these dynamics ({quality})."
    elif not collapsed:
        verdict = "inconclusive"
        summary = (f"no run collapsed completely, so the bridge cannot be tested; {crossed_other} runs crossed η_crit = "
                   f"{crit:g} in trusted fits without collapsing ({quality}).")
    else:
        verdict = findings[0].verdict
        said = {"holds": "collapsing runs cross the critical rate", "fails": "collapsing runs do not cross the critical rate",
                "inconclusive": "whether collapsing runs cross the critical rate is not settled"}[verdict]
        summary = (f"{said}: {findings[0].interval_text()} against η_crit = {crit:g}; {crossed_other} other runs "
                   f"crossed it ({quality}).")
    return Claim(
        "eta-bridge",
        "The upper bound on the learning rate ... to minimize cosine similarity scores between class embeddings while "
        "preventing the class embedding mean from increasing",
        "Theorem 1 and Appendix D (bridge to training: issue 13, item 5)",
        f"The runs that end completely collapsed took effective Appendix D steps above the critical rate "
        f"2(k−1)/(k−2) = {crit:g}: the largest trusted per-step η of each collapsed run (geometry.csv, one fit per "
        f"epoch) lies above it. Untrusted fits (r2 < {TRUST['r2']}, r2_step < {TRUST['r2_step']} or s_min < "
        f"{TRUST['s_min']}: the pole of zero-sum means) are left out; if fewer than {100 * MIN_TRUSTED:.0f} % of the "
        "intervals are trusted, the model is taken not to describe the dynamics.",
        findings, verdict, summary)


def all_claims(runs: pd.DataFrame, eta: pd.DataFrame, *, lrs: Sequence[float], batches: Sequence[int]) -> list[Claim]:
    """Every claim of the study, in report order."""
    runs = check_runs(runs)
    missing = [c for c in ETA_COLUMNS if c not in eta.columns]
    if missing:
        raise ValueError(f"eta lacks the column(s) {missing}; expected the columns of eta_eff.csv: {list(ETA_COLUMNS)}")
    return [
        claim_collapse(runs, lrs), claim_degradation(runs), claim_batch(runs, batches), claim_batch32(runs, batches),
        claim_geometry(runs, lrs, clop=False), claim_geometry(runs, lrs, clop=True), claim_small_batch(runs),
        claim_bridge(runs, eta),
    ]


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per finding: claim, claim verdict, scope, measured, role, n, mean, low, high, unit, verdict, reason."""
    rows = [{"claim": c.key, "claim_verdict": c.verdict, "scope": f.scope, "measured": f.measured, "role": f.role,
             "n": f.n, "mean": f.mean, "low": f.low, "high": f.high, "unit": f.unit.strip(), "verdict": f.verdict,
             "reason": f.reason} for c in claims for f in c.findings]
    return pd.DataFrame(rows, columns=["claim", "claim_verdict", "scope", "measured", "role", "n", "mean", "low", "high",
                                       "unit", "verdict", "reason"])
