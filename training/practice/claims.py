"""The claims that the practice study tests, and their verdicts.

Paper: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP), arXiv 2403.18699.

Input: the per-run table (:data:`training.practice.table.RUN_COLUMNS`) and the per-interval Appendix D fits
(:data:`training.practice.table.ETA_COLUMNS`). Output: :class:`Claim` objects, each with the paper's words, the
statement tested, its findings (:mod:`training.practice.findings`: mean over seeds, 95 % interval, verdict,
margin) and a verdict computed from them, never typed.

Each claim is tested as the paper states it:

1. ``collapse-lr10`` (Sec. 5): at lr 10 both baselines end completely collapsed (mu >= 0.999).
2. ``clop-degradation`` (Sec. 5): top-1 falls less from lr 0.3 to 10 with CLOP than without. Only where the
   baseline degrades (its own drop holds); where it does not, the cell is ``not testable``.
3. ``clop-all-batches`` (Sec. 5): CLOP beats the baseline at every batch size; also judged by a paired test
   pooled over the batch sizes (per loss) and a sign test over the cells.
4. ``clop-batch32`` (Sec. 5): "similar accuracy": SupCon + CLOP at batch 32 equals SupCon at the largest batch
   within +-:data:`SIMILAR_PP` (two-sided equivalence).
5. ``baseline-simplex`` (Sec. 3.2): without CLOP the unit class means sum to about zero (||sum c_i|| <
   :data:`SUM_SMALL`) and span rank k - 1 (s_k/s_1 < :data:`SV_SMALL` <= s_(k-1)/s_1), the similarities' spread
   reported.
6. ``clop-orthogonal`` (Sec. 4): with CLOP the classes are more orthogonal than without: |mean cosine| and the
   mean |cosine| of the class means are lower with CLOP, paired by seed.
7. ``small-batch-lars`` (our note on LARS): at batch 32 and lr = 0.3 x 32/256 every variant beats the untrained
   encoder.
8. ``eta-bridge`` (Theorem 1, Appendix D): the runs that end collapsed took per-step Appendix D steps above the
   critical rate. First: did anything collapse? If not, ``not testable``.

Claims 5 and 6 are judged at lr :data:`LR_PAPER` = 0.3, the rate Sec. 5 prescribes (0.3 x batch/256) and the one
point both of its axes share; the other rates are in collapse.csv. Accuracy is in percentage points (pp) with
the resolution of one test image; a diverged run counts at chance top-1 and is left out of geometry findings.
Holm's correction is applied within each claim (the family is printed).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from training.eval.evaluate import COLLAPSE_MEAN_NORM
from training.eval.geometry import MIN_R2_STEP, critical_lr
from training.practice.findings import (
    Finding,
    combine,
    holm,
    judge_bound,
    judge_diff,
    judge_equiv,
    unanimous,
)
from training.practice.table import (
    ETA_COLUMNS,
    TOP1_RESOLUTION_PP,
    K,
    Points,
    check_runs,
    paired,
    pick,
    reference,
    resolution,
    top1_pp,
    trusted,
    values,
    variant_name,
)
from training.sweeps.grid import VARIANTS

__all__ = ["NEGLIGIBLE_PP", "SIMILAR_PP", "LR_LARGE", "LR_PAPER", "BATCH_SMALL", "SUM_SMALL", "SV_SMALL",
           "judged_batches",
           "ORTHO_NEGLIGIBLE", "PEAK_FRACTION", "BASELINES", "PAIRS", "OPT_NAMES", "Claim", "all_claims",
           "claims_frame"]

NEGLIGIBLE_PP = 1.0
"""An accuracy effect inside +-1 pp (3.6 of the 359 test images) is of no practical size."""
SIMILAR_PP = 1.0
""""Similar accuracy": within +-1 pp."""
LR_LARGE = 10.0
LR_PAPER = 0.3
"""The paper's rate at batch 256 (0.3 x batch/256): degradation at lr 10 is measured against it."""
BATCH_SMALL = 32
SUM_SMALL = 1.0
""""Sum to about zero": ||sum_i c_i|| below the length of one class mean (sqrt(k) = 3.16 orthonormal, k collapsed)."""
SV_SMALL = 0.1
"""Rank k - 1: the smallest singular value below a tenth of the largest, the next one not."""
ORTHO_NEGLIGIBLE = 0.1 / (K - 1)
"""A change of a cosine smaller than a tenth of the way from a simplex ETF (-1/(k-1)) to orthogonal (0)."""
PEAK_FRACTION = 0.5
"""A run's per-step eta is pooled over the intervals whose learning rate is at least this fraction of its peak."""
BASELINES = ("infonce10", "supcon100")
PAIRS = (("infonce10", "infonce10-clop"), ("supcon100", "supcon100-clop"))
OPT_NAMES = {"lars": "LARS", "sgd": "SGD"}


@dataclasses.dataclass
class Claim:
    """A claim: the paper's words and where, the statement tested, findings, verdict and a computed summary;
    ``families`` names the Holm families and their sizes."""

    key: str
    quote: str
    source: str
    test: str
    findings: list[Finding]
    verdict: str
    summary: str
    families: str = ""


def _corrected(findings: list[Finding], label: str = "cells") -> tuple[list[Finding], str]:
    out, m = holm(findings)
    return out, (f"Holm over {m} {label}" if m else "no decided cells")


def _by_opt(findings: list[Finding], opts: Sequence[str]) -> dict[str, list[str]]:
    return {o: [f.verdict for f in findings if f.role == "verdict" and f.scope.startswith(OPT_NAMES[o])] for o in opts}


def _per_optimiser(findings: list[Finding], gated: dict[str, list[str]] | None = None) -> dict[str, str]:
    """The verdict per optimiser (LARS, SGD): its verdict findings combined, then the verdicts in ``gated`` (cells
    decided by a precondition rather than by a finding)."""
    gated = gated or {}
    return {o: combine(v + gated.get(o, [])) for o, v in _by_opt(findings, ("lars", "sgd")).items()}


def _summary(per_opt: dict[str, str]) -> str:
    """"with LARS: ...; with SGD: ..." (no final full stop)."""
    return "; ".join(f"with {OPT_NAMES[o]}: {v}" for o, v in per_opt.items())


# ----------------------------------------------------------------------------------------------- claims 1-2


def claim_collapse(runs: pd.DataFrame, lrs: Sequence[float]) -> Claim:
    findings = []
    for opt in ("lars", "sgd"):
        for b in BASELINES:
            big, ref = pick(runs, b, opt, 256, LR_LARGE), pick(runs, b, opt, 256, LR_PAPER)
            div = int(big["diverged"].sum())
            findings.append(judge_bound(f"{OPT_NAMES[opt]}, {variant_name(b)}" + (f" ({div} diverged)" if div else ""),
                                        f"μ at lr {LR_LARGE:g}", values(big, "mu_norm"), COLLAPSE_MEAN_NORM,
                                        resolution=resolution(big, key="mu_norm")))
            a, c = paired(top1_pp(big), top1_pp(ref))
            findings.append(judge_diff(f"{OPT_NAMES[opt]}, {variant_name(b)}", f"top-1 at lr {LR_LARGE:g} − at lr {LR_PAPER:g}",
                                       a - c, negligible=NEGLIGIBLE_PP, resolution=TOP1_RESOLUTION_PP, unit=" pp",
                                       role="context"))
    findings, fam = _corrected(findings)
    per_opt = _per_optimiser(findings)
    onset = {}
    for opt in ("lars", "sgd"):
        first = None
        for lr in sorted(lrs):
            mus = [values(pick(runs, b, opt, 256, lr), "mu_norm") for b in BASELINES]
            if all(len(m) for m in mus) and all((m >= COLLAPSE_MEAN_NORM).all() for m in mus):
                first = lr
                break
        onset[opt] = "none on the grid" if first is None else f"lr {first:g}"
    summary = _summary(per_opt)
    summary += ". First grid lr at which every seed of both baselines ends completely collapsed (μ ≥ 0.999): " + \
        ", ".join(f"{OPT_NAMES[o]} {onset[o]}" for o in per_opt) + "."
    return Claim(
        "collapse-lr10",
        "excessively large learning rates can lead to complete collapse, as clearly observed in the baseline methods "
        "at a learning rate of 10",
        "Sec. 5, 'CLOP Prevents Collapse with Large Learning Rates' (Fig. 7)",
        f"At lr {LR_LARGE:g} (batch 256) both baselines end completely collapsed: μ, the norm of the mean unit "
        f"embedding of the 359 held-out test images after the last epoch (Theorem 1's μ), lies above {COLLAPSE_MEAN_NORM} "
        "(training.pretrain's collapse criterion). Per optimiser: both baselines; overall: both optimisers.",
        findings, unanimous(list(per_opt.values())), summary, fam)


def claim_degradation(runs: pd.DataFrame) -> Claim:
    findings, cells = [], {}
    for opt in ("lars", "sgd"):
        for base, clop in PAIRS:
            b0, b1, c0, c1 = paired(*(top1_pp(pick(runs, v, opt, 256, lr)) for v in (base, clop) for lr in (LR_PAPER, LR_LARGE)))
            scope = f"{OPT_NAMES[opt]}, {variant_name(base)} vs + CLOP"
            pre = judge_diff(f"{OPT_NAMES[opt]}, {variant_name(base)}", f"baseline's drop: top-1 lr {LR_PAPER:g} − lr {LR_LARGE:g}",
                             b0 - b1, negligible=NEGLIGIBLE_PP, resolution=TOP1_RESOLUTION_PP, unit=" pp", role="precondition")
            findings.append(pre)
            test = judge_diff(scope, f"(top-1 lr {LR_PAPER:g} − lr {LR_LARGE:g}): baseline minus CLOP", (b0 - b1) - (c0 - c1),
                              negligible=NEGLIGIBLE_PP, resolution=TOP1_RESOLUTION_PP, unit=" pp")
            if pre.verdict != "holds":
                why = ("not testable: the baseline does not degrade" if pre.verdict == "fails"
                       else "the baseline's degradation is not established")
                test = dataclasses.replace(test, role="context", verdict="—", reason=f"{why}; {test.reason}")
                cells[(opt, base)] = "not testable" if pre.verdict == "fails" else "inconclusive"
            findings.append(test)
            e0, e1, bb0, bb1 = paired(*(top1_pp(pick(runs, v, opt, 256, lr)) for v in (clop + "-etf", base)
                                        for lr in (LR_PAPER, LR_LARGE)))
            findings.append(judge_diff(f"{OPT_NAMES[opt]}, {variant_name(base)} vs + CLOP (ETF)",
                                       f"(top-1 lr {LR_PAPER:g} − lr {LR_LARGE:g}): baseline minus CLOP (ETF)",
                                       (bb0 - bb1) - (e0 - e1), negligible=NEGLIGIBLE_PP, resolution=TOP1_RESOLUTION_PP,
                                       unit=" pp", role="context"))
    findings, fam = _corrected(findings)
    per_opt = _per_optimiser(findings, {o: [v for (opt, _), v in cells.items() if opt == o] for o in ("lars", "sgd")})
    return Claim(
        "clop-degradation",
        "with the incorporation of CLOP into the loss function, we observe a significantly smaller performance "
        "degradation",
        "Sec. 5, 'CLOP Prevents Collapse with Large Learning Rates' (Fig. 7)",
        f"Where the baseline degrades from lr {LR_PAPER:g} to lr {LR_LARGE:g} (its drop in top-1 lies above 0 and beyond "
        f"+{NEGLIGIBLE_PP:g} pp: the precondition), it degrades more than with CLOP (orthonormal prototypes, λ = 1): per "
        f"seed, the baseline's drop minus the CLOP variant's lies above 0 and beyond +{NEGLIGIBLE_PP:g} pp (batch 256). "
        "A cell whose baseline does not degrade is not testable. Per optimiser: every testable loss; overall: both "
        "optimisers.", findings, unanimous(list(per_opt.values())),
        _summary(per_opt) + ".", fam)


# ----------------------------------------------------------------------------------------------- claims 3-4


def judged_batches(batches: Sequence[int]) -> list[int]:
    """The batch sizes of ``batches`` inside the paper's range (Sec. 5 trains 32 ... 2048): the batch claim is
    judged there; smaller ones (the study's 16) are drawn in the figures but not judged."""
    return [b for b in batches if b >= BATCH_SMALL]


def claim_batch(runs: pd.DataFrame, batches: Sequence[int]) -> Claim:
    cells, per_seed = [], {base: [] for base, _ in PAIRS}
    for b in judged_batches(batches):
        lr = 0.3 * b / 256
        for base, clop in PAIRS:
            c, a = paired(top1_pp(pick(runs, clop, "lars", b, lr)), top1_pp(pick(runs, base, "lars", b, lr)))
            cells.append(judge_diff(f"batch {b} (lr {lr:.4g}), {variant_name(base)}", "top-1 with CLOP − without", c - a,
                                    negligible=NEGLIGIBLE_PP, resolution=TOP1_RESOLUTION_PP, unit=" pp"))
            per_seed[base].append((c - a).rename(b))
    cells, fam_cells = _corrected(cells, "batch/loss cells")
    pooled = []
    for base, _ in PAIRS:
        table = pd.concat(per_seed[base], axis=1).dropna() if per_seed[base] else pd.DataFrame()
        mean = table.mean(axis=1) if len(table.columns) else pd.Series(dtype=float)
        pooled.append(judge_diff(f"all batch sizes, {variant_name(base)}", "top-1 with CLOP − without, mean over the "
                                 f"{len(table.columns)} batch sizes", mean, negligible=NEGLIGIBLE_PP,
                                 resolution=TOP1_RESOLUTION_PP / max(1, len(table.columns)), unit=" pp"))
    pooled, fam_pooled = _corrected(pooled, "pooled tests")
    up = sum(f.mean > 0 for f in cells if f.n)
    down = sum(f.mean < 0 for f in cells if f.n)
    p_sign = float(sps.binomtest(up, up + down).pvalue) if up + down else math.nan
    verdicts = [f.verdict for f in cells]
    if verdicts and all(v == "holds" for v in verdicts):
        verdict = "holds"
    elif "fails" in verdicts + [f.verdict for f in pooled]:
        verdict = "fails"
    else:
        verdict = "inconclusive"
    counts = {v: sum(f.verdict == v for f in cells) for v in ("holds", "fails", "inconclusive")}
    summary = (f"{counts['holds']} of {len(cells)} batch/loss cells hold, {counts['fails']} fail, {counts['inconclusive']} "
               f"inconclusive; pooled over batch sizes: " + "; ".join(f"{f.scope.split(', ')[1]} {f.verdict} "
                                                                    f"({f.interval_text()})" for f in pooled)
               + f"; sign test over the cells: {up} above 0, {down} below (two-sided p = {p_sign:.3g}).")
    return Claim(
        "clop-all-batches",
        "CLOP consistently outperformed the baseline methods across all batch sizes",
        "Sec. 5, 'CLOP Enables Smaller Batch Sizes' (Fig. 6)",
        f"At every batch size of the paper's range (32 and up; LARS, lr = 0.3 × batch/256), top-1 with CLOP "
        f"(orthonormal, λ = 1) minus without, paired "
        f"by seed, lies above 0 and beyond +{NEGLIGIBLE_PP:g} pp, for both losses (holds: every cell holds). Also judged "
        "pooled: per loss, each seed's mean difference over the batch sizes. Fails when a cell or a pooled test fails "
        "after Holm's correction within its family.",
        cells + pooled, verdict, summary, f"{fam_cells}; {fam_pooled}")


def claim_batch32(runs: pd.DataFrame, batches: Sequence[int]) -> Claim:
    top = max(batches) if len(batches) else 512
    findings = []
    for base, clop in PAIRS:
        c, a = paired(top1_pp(pick(runs, clop, "lars", BATCH_SMALL, 0.3 * BATCH_SMALL / 256)),
                      top1_pp(pick(runs, base, "lars", top, 0.3 * top / 256)))
        findings.append(judge_equiv(f"{variant_name(clop)} at batch {BATCH_SMALL} vs {variant_name(base)} at batch {top}",
                                    "top-1 difference", c - a, tolerance=SIMILAR_PP, resolution=TOP1_RESOLUTION_PP,
                                    unit=" pp", role="verdict" if base == "supcon100" else "context"))
    findings, fam = _corrected(findings)
    main = findings[1]
    return Claim(
        "clop-batch32",
        "Remarkably, CLOP achieved similar accuracy with a batch size of 32 compared to the baseline SupCon with a "
        "batch size of 2048 for CIFAR-100.",
        "Sec. 5, 'CLOP Enables Smaller Batch Sizes' (Fig. 6)",
        f"SupCon + CLOP at batch {BATCH_SMALL} and SupCon without CLOP at the largest batch here ({top}; the paper's 2048 "
        f"exceeds the 1,438 training images) give similar top-1: per seed, the difference lies within ±{SIMILAR_PP:g} pp "
        "(two-sided equivalence). The InfoNCE pair is context.",
        findings, main.verdict, f"SupCon + CLOP at {BATCH_SMALL} minus SupCon at {top}: {main.interval_text()}.", fam)


# ----------------------------------------------------------------------------------------------- claims 5-6


def _geom(scope: str, measured: str, frame: pd.DataFrame, key: str, bound: float, *, above: bool,
          role: str = "verdict") -> Finding:
    return judge_bound(scope, measured, values(frame, key), bound, above=above, resolution=resolution(frame, key=key),
                       role=role)


def claim_simplex(runs: pd.DataFrame) -> Claim:
    findings = []
    for opt in ("lars", "sgd"):
        for base in BASELINES:
            f = pick(runs, base, opt, 256, LR_PAPER)
            scope = f"{OPT_NAMES[opt]}, {variant_name(base)}, lr {LR_PAPER:g}"
            findings += [
                _geom(scope, f"‖Σ c_i‖, the norm of the sum of the unit class means (< {SUM_SMALL:g}: about zero)", f,
                      "sum_norm", SUM_SMALL, above=False),
                _geom(scope, f"s_k/s_1, smallest over largest singular value (< {SV_SMALL:g}: rank ≤ k − 1)", f,
                      "sv_min_ratio", SV_SMALL, above=False),
                _geom(scope, f"s_(k−1)/s_1 (> {SV_SMALL:g}: rank not below k − 1)", f, "sv_next_ratio", SV_SMALL, above=True),
                _geom(scope, "std of the pairwise cosines (0 for a simplex ETF)", f, "cos_std", 0.0, above=True,
                      role="context"),
                _geom(scope, "mean pairwise cosine (−1/(k−1) = −0.111 for a zero sum)", f, "cos_mean", -1 / (K - 1),
                      above=True, role="context"),
            ]
    findings, fam = _corrected(findings)
    per_opt = _per_optimiser(findings)
    return Claim(
        "baseline-simplex",
        "gradient descent consistently converges to a subspace of rank k − 1, where the pairwise similarities vary "
        "significantly ... forming a zero-mean subspace of rank k − 1",
        "Sec. 3.2 (Lemma 2, Fig. 4)",
        f"Without CLOP, at lr {LR_PAPER:g} (the rate of Sec. 5 at batch 256; every other rate in collapse.csv), the k unit "
        f"class means of the held-out images sum to about zero (‖Σ c_i‖ < {SUM_SMALL:g}) and span rank k − 1 (s_k/s_1 < "
        f"{SV_SMALL:g} ≤ s_(k−1)/s_1); the spread of their cosines is reported (not an ETF: it varies). Per optimiser: both "
        "losses; overall: both optimisers.",
        findings, unanimous(list(per_opt.values())), _summary(per_opt) + ".",
        fam)


def claim_orthogonal(runs: pd.DataFrame) -> Claim:
    findings = []
    for opt in ("lars", "sgd"):
        for base, clop in PAIRS:
            fb, fc = pick(runs, base, opt, 256, LR_PAPER), pick(runs, clop, opt, 256, LR_PAPER)
            scope = f"{OPT_NAMES[opt]}, {variant_name(base)} vs + CLOP, lr {LR_PAPER:g}"
            b, c = paired(values(fb, "cos_mean").abs(), values(fc, "cos_mean").abs())
            findings.append(judge_diff(scope, "|mean cosine| without − with CLOP", b - c, negligible=ORTHO_NEGLIGIBLE,
                                       resolution=resolution(fb, fc, key="cos_mean")))
            b, c = paired(values(fb, "abs_cos_mean"), values(fc, "abs_cos_mean"))
            findings.append(judge_diff(scope, "mean |cosine| of the class pairs without − with CLOP", b - c,
                                       negligible=ORTHO_NEGLIGIBLE, resolution=resolution(fb, fc, key="abs_cos_mean")))
            for v, fr in ((base, fb), (clop, fc)):
                findings.append(_geom(f"{OPT_NAMES[opt]}, {variant_name(v)}, lr {LR_PAPER:g}", "mean |cosine| of the class "
                                      "pairs (0: orthogonal)", fr, "abs_cos_mean", 0.0, above=True, role="context"))
    findings, fam = _corrected(findings)
    per_opt = _per_optimiser(findings)
    return Claim(
        "clop-orthogonal",
        "the embeddings trained with CLOP show more distinct boundaries between classes, with each class being more "
        "orthogonal to the others",
        "Sec. 4 (synthetic data, Table 5; orthonormal prototypes)",
        f"At lr {LR_PAPER:g} (batch 256), paired by seed, the class means are nearer orthogonal with CLOP (orthonormal "
        "prototypes, λ = 1) than without, in both readings: |mean pairwise cosine| (the classes on average) and the mean "
        "of |cosine| over the class pairs (each class to the others) are lower with CLOP, by more than "
        f"{ORTHO_NEGLIGIBLE:.3g} (a tenth of the way from a simplex ETF to orthogonal). Per optimiser: both losses; "
        "overall: both optimisers.",
        findings, unanimous(list(per_opt.values())), _summary(per_opt) + ".",
        fam)


# ----------------------------------------------------------------------------------------------- claims 7-8


def claim_small_batch(runs: pd.DataFrame) -> Claim:
    findings = []
    lr = 0.3 * BATCH_SMALL / 256
    for v in VARIANTS:
        small, ref = paired(top1_pp(pick(runs, v, "lars", BATCH_SMALL, lr)), top1_pp(reference(runs, v)))
        findings.append(judge_diff(f"{variant_name(v)}, LARS batch {BATCH_SMALL} lr {lr:g}", "top-1 − untrained encoder's",
                                   small - ref, negligible=NEGLIGIBLE_PP, resolution=TOP1_RESOLUTION_PP, unit=" pp"))
    for v in VARIANTS:
        mid, ref = paired(top1_pp(pick(runs, v, "lars", 256, LR_PAPER)), top1_pp(reference(runs, v)))
        findings.append(judge_diff(f"{variant_name(v)}, LARS batch 256 lr {LR_PAPER:g}", "top-1 − untrained encoder's",
                                   mid - ref, negligible=NEGLIGIBLE_PP, resolution=TOP1_RESOLUTION_PP, unit=" pp",
                                   role="context"))
    findings, fam = _corrected(findings)
    main = [f for f in findings if f.role == "verdict"]
    learns = [f.scope.split(",")[0] for f in main if f.verdict == "holds"]
    return Claim(
        "small-batch-lars",
        "with SimCLR's LARS (trust coefficient 1e-3) each layer moves by about lr × 1e-3 of its norm per step, so at batch "
        "32 the paper's lr = 0.3 × 32/256 gives steps of 4e-5 of the weights",
        "our note on the optimiser (the paper does not name it)",
        f"LARS at batch {BATCH_SMALL} with lr = 0.3 × {BATCH_SMALL}/256 = {lr:g} learns: per seed, its top-1 minus the "
        f"untrained encoder's (same seed and labels; lr {1e-6:g}) lies above 0 and beyond +{NEGLIGIBLE_PP:g} pp. All six "
        "variants hold: holds; all fail: fails. Batch 256 at lr 0.3 is context.",
        findings, unanimous([f.verdict for f in main]),
        f"{len(learns)} of {len(main)} variants beat the untrained encoder at batch {BATCH_SMALL}" +
        (f" ({', '.join(learns)})" if learns else "") + ".", fam)


def run_eta(eta: pd.DataFrame) -> pd.DataFrame:
    """Per run: the pooled per-step eta over its intervals at the top of its schedule (step lr >=
    :data:`PEAK_FRACTION` x its peak): :func:`training.eval.geometry.pooled_eta`'s inverse-variance mean over the
    trusted ones (:func:`training.practice.table.trusted`), its standard error and the intervals used."""
    cols = ["run", "eta", "se", "used", "intervals"]
    if not len(eta):
        return pd.DataFrame(columns=cols)
    lr = pd.to_numeric(eta["step_lr"], errors="coerce")
    peak = lr.groupby(eta["run"]).transform("max")
    top = (lr >= PEAK_FRACTION * peak) | peak.isna()
    ok = top & trusted(eta)
    se = pd.to_numeric(eta["eta_step_se"], errors="coerce")
    w = (1.0 / se ** 2).where(ok, 0.0)
    we = (w * pd.to_numeric(eta["eta_step"], errors="coerce")).where(ok, 0.0)
    g = pd.DataFrame({"run": eta["run"], "w": w, "we": we, "used": ok.astype(int), "top": top.astype(int)}).groupby("run")
    sums = g.sum()
    out = pd.DataFrame({"run": sums.index, "eta": (sums["we"] / sums["w"]).where(sums["used"] > 0).to_numpy(),
                        "se": (1.0 / np.sqrt(sums["w"])).where(sums["used"] > 0).to_numpy(),
                        "used": sums["used"].to_numpy(), "intervals": sums["top"].to_numpy()})
    return out[cols].reset_index(drop=True)


def claim_bridge(runs: pd.DataFrame, eta: pd.DataFrame) -> Claim:
    crit = critical_lr(K)
    runs = runs.frame if isinstance(runs, Points) else runs
    done = runs[~runs["diverged"] & ~runs["reference"]]
    collapsed = set(done.loc[done["end_mu_norm"] >= COLLAPSE_MEAN_NORM, "run"])
    moving = eta[np.isfinite(pd.to_numeric(eta["r2_step"], errors="coerce"))]
    ok = trusted(moving)
    quality = (f"{len(moving)} intervals with motion; median R²_step = {moving['r2_step'].median():.3g}, "
               f"{100 * float(ok.mean()) if len(moving) else 0:.0f} % with R²_step ≥ {MIN_R2_STEP:g}") if len(moving) \
        else "no interval with motion"
    pole = ("Zero-sum class means are fixed points of the Appendix D step (every η predicts no motion there) and the "
            "pole of its one-step projected fit, so near the configuration these losses reach a low R² is partly by "
            "construction.")
    per_run = run_eta(eta)
    findings = []
    for name, members in (("collapsed runs (final μ ≥ 0.999)", collapsed), ("other runs", set(done["run"]) - collapsed)):
        mine = per_run[per_run["run"].isin(members) & np.isfinite(per_run["eta"])]
        res = float(np.sqrt((mine["se"] ** 2).mean())) if len(mine) else 0.0  # each run's own standard error
        findings.append(judge_bound(f"{name}: {len(members)} runs, {len(mine)} with a pooled η",
                                    "pooled per-step η at the top of the schedule", mine["eta"], crit, resolution=res,
                                    role="verdict" if name.startswith("collapsed") else "context"))
    if not collapsed:
        verdict = "not testable"
        summary = f"no run ended completely collapsed, so there is nothing to bridge ({quality}). {pole}"
        findings[0] = dataclasses.replace(findings[0], verdict="—", role="context", reason="no collapsed run")
        fam = "no decided cells"
    else:
        findings, fam = _corrected(findings)
        verdict = findings[0].verdict
        said = {"holds": "collapsing runs took steps above the critical rate",
                "fails": "collapsing runs did not take steps above the critical rate",
                "inconclusive": "whether collapsing runs took steps above the critical rate is not settled"}[verdict]
        summary = f"{said}: {findings[0].interval_text()} against η_crit = {crit:g} ({quality}). {pole}"
    return Claim(
        "eta-bridge",
        "The upper bound on the learning rate ... to minimize cosine similarity scores between class embeddings while "
        "preventing the class embedding mean from increasing",
        "Theorem 1 and Appendix D (the bridge to training)",
        f"First: did any run end completely collapsed (final μ ≥ {COLLAPSE_MEAN_NORM})? If none, the claim is not testable. "
        f"Else the collapsed runs took Appendix D steps above the critical rate 2(k−1)/(k−2) = {crit:g}: each run's per-step "
        f"η, the inverse-variance mean over its intervals at the top of its schedule (lr ≥ {PEAK_FRACTION:g} × peak) whose "
        f"fitted steps explain at least {MIN_R2_STEP:g} of the motion, lies above it over the collapsed runs.",
        findings, verdict, summary, fam)


# ----------------------------------------------------------------------------------------------- all


def all_claims(runs: pd.DataFrame, eta: pd.DataFrame, *, lrs: Sequence[float], batches: Sequence[int]) -> list[Claim]:
    """Every claim of the study, in report order."""
    runs = Points(check_runs(runs))
    missing = [c for c in ETA_COLUMNS if c not in eta.columns]
    if missing:
        raise ValueError(f"eta lacks the column(s) {missing}; expected the columns of eta_eff.csv: {list(ETA_COLUMNS)}")
    return [
        claim_collapse(runs, lrs), claim_degradation(runs), claim_batch(runs, batches), claim_batch32(runs, batches),
        claim_simplex(runs), claim_orthogonal(runs), claim_small_batch(runs), claim_bridge(runs, eta),
    ]


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per finding: claim, claim verdict, scope, measured, role, n, mean, low, high, unit, verdict, margin
    (SE), resolution, floored, family, reason."""
    cols = ["claim", "claim_verdict", "scope", "measured", "role", "n", "mean", "low", "high", "unit", "verdict",
            "margin_se", "resolution", "floored", "family", "reason"]
    rows = [{"claim": c.key, "claim_verdict": c.verdict, "scope": f.scope, "measured": f.measured, "role": f.role,
             "n": f.n, "mean": f.mean, "low": f.low, "high": f.high, "unit": f.unit.strip(), "verdict": f.verdict,
             "margin_se": f.margin, "resolution": f.resolution, "floored": f.floored, "family": f.family,
             "reason": f.reason} for c in claims for f in c.findings]
    return pd.DataFrame(rows, columns=cols)
