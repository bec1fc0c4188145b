"""The ladder's verdicts on the CLOP paper's claims (arXiv 2403.18699), as :class:`clop.claims.Claim` records.

Every verdict is computed from the study's CSVs (:mod:`simulations.rungs.summary`); the per-trial comparisons
go through :mod:`clop.stats` (intervals and margins in the ``result`` field). Claims, per rung r = 0, 1, 2:

* ``LAD-T1-r<r>`` (Sec. 3.1, Figure 3): "The theoretical upper bound closely aligns with the highest successful
  learning rate recorded." Tested: Theorem 1's rate against the measured onset of complete collapse, for the
  losses where the rate is defined: L_class (the corrected rate 2(K-1)/(K-2) in Appendix D's units, i.e.
  lr = 1/(K - 2) for K points) and, on rung 1, InfoNCE, SupCon and DCL through the mode Theorem 1 bounds (the
  mean's translation, :func:`theory.linearisation.simplex_translation_step`); on rung 2 the rung-1 rate mapped by
  r^2 / lambda_max(K) (linear encoder). ``holds`` when every loss that collapses does so at the rate (within
  the band); ``conservative`` when nothing collapses up to the largest lr tested, or collapse sets in only far
  above the rate (the bound is safe but not tight); ``fails`` when collapse sets in below the rate.
* ``LAD-OS-r<r>`` (Sec. 3.1): "the primary cause of complete collapse in contrastive learning is the
  overshooting of the repulsive force". Tested: where runs collapse, whether the mode that loses stability
  first is the mean's translation (the repulsive mode of Figure 2) and collapse sets in at its rate; on rung 2,
  whether the collapsed runs sit on the shared output bias (the translation mode through a shared parameter)
  or had exploding weights (a different cause). ``not testable`` where nothing collapses.
* ``LAD-LR-r<r>`` (Sec. 5): "as demonstrated by Theorem 1, excessively large learning rates can lead to
  complete collapse". ``holds`` when some loss collapses in every trial above a step; ``fails`` (with "no
  collapse up to X") when none does up to the largest lr tested.
* ``LAD-L1-<loss>`` (Lemma 1, Sec. 3.1; "can be applied to the majority of current loss functions that rely
  solely on cosine similarity"): complete collapse is a local minimum of the loss. ``holds`` for a minimum;
  ``fails`` for a saddle or maximum (stationary, not a minimum) or where the gradient does not vanish.
* ``LAD-CLOP-r1`` (Sec. 5, "CLOP Prevents Collapse with Large Learning Rates"): on rung 1, the CLOP term raises
  the step at which training fails, paired by trial (:func:`clop.stats.direction_verdict`, negligible = band).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from clop.claims import Claim
from clop.stats import direction_verdict, margin_se, raises_judge
from simulations.rungs.summary import (
    MIN_TRIALS, agreement, event_table, figure3_path, floored_gain, horizon_excess, load, mid,
)

__all__ = ["band", "ladder_claims", "COMMAND"]

COMMAND = "python simulations/ladder.py"
BIAS_DOMINATED = 0.9
"""A collapsed MLP run is attributed to its output bias when ||b2|| >= this x the mean output norm."""
_T1_QUOTE = "The theoretical upper bound closely aligns with the highest successful learning rate recorded."
_OS_QUOTE = "the primary cause of complete collapse in contrastive learning is the overshooting of the repulsive force"
_LR_QUOTE = "as demonstrated by Theorem 1, excessively large learning rates can lead to complete collapse"
_L1_QUOTE = ("there exist infinitely many local minima where all embeddings produced by f are all equal or co-linear; "
             "it can be applied to the majority of current loss functions that rely solely on cosine similarity")


def band(out: Path, resolution: float) -> float:
    """Half-width of the agreement band in log units: the resolution plus the largest measured horizon excess."""
    ex = horizon_excess(out)
    extra = 0.0 if ex is None or ex.empty else max(0.0, float(ex["excess"].max()))
    return math.log1p(resolution) + math.log1p(extra)


def _t1_rung0(out: Path, b: float) -> Claim:
    f3 = pd.read_csv(figure3_path(out))
    logs = np.log(mid(f3["max_lr"], f3["min_collapse_lr"]) / f3["critical_lr"].to_numpy(dtype=float))
    logs = [float(v) for v in logs if np.isfinite(v)]
    rel = float((f3["resolution"] / f3["critical_lr"]).max())
    verdict, result, detail = agreement(logs, b, rel)
    return Claim("LAD-T1-r0", "Sec. 3.1, Figure 3 (right)", _T1_QUOTE,
                 "rung 0: L_class on k = 3..100 free class embeddings (Figure 3's data, every k and trial): measured "
                 "collapse onset against the corrected rate 2(k-1)/(k-2)", verdict,
                 f"{result}; {detail}", "figure3_max_lr.csv", "python simulations/lr_bound.py")


def _collapse_vs(tab: pd.DataFrame, pred_col: str, b: float, resolution: float) -> tuple[str, list[str]]:
    """Verdict across losses: agreement where collapse is bracketed, 'none' where it never happens."""
    parts, verdicts = [], []
    for _, g in tab[tab["event"] == "collapse"].iterrows():
        name = g["loss"] if "optimiser" not in g else f"{g['model']}/{g['optimiser']}/{g['loss']}"
        if g["none"] == g["trials"]:
            verdicts.append("conservative")
            parts.append(f"{name}: no collapse up to lr {g['lo']:.4g} (rate {g[pred_col]:.4g})")
        elif not math.isfinite(g[pred_col]):
            parts.append(f"{name}: collapses from lr {g['hi']:.4g}; no rate defined here")
        elif g["bracketed"] == g["trials"] and abs(math.log(g["hi"] / g[pred_col])) < 1.0:
            v, res, _ = agreement(g["log_ratios"], b, resolution)
            verdicts.append(v)
            parts.append(f"{name}: {v}, {res}")
        elif g["hi_min"] > g[pred_col] * math.exp(b):
            verdicts.append("conservative")
            parts.append(f"{name}: collapse in {g['bracketed']}/{g['trials']} trials, from lr {g['hi_min']:.4g} = "
                         f"{g['hi_min'] / g[pred_col]:.3g} x the rate {g[pred_col]:.4g}")
        else:
            verdicts.append("fails")
            parts.append(f"{name}: collapse below the rate, from lr {g['hi_min']:.4g} (rate {g[pred_col]:.4g})")
    if not verdicts:
        return "not checked", parts
    if "fails" in verdicts:
        return "fails", parts
    if all(v == "conservative" for v in verdicts):
        return "conservative", parts
    if "inconclusive" in verdicts:
        return "inconclusive", parts
    return "holds", parts


def _t1_rung1(out: Path, b: float, resolution: float) -> Claim:
    ev = load(out, "rung1_events_base.csv")
    if ev is None:
        return Claim("LAD-T1-r1", "Sec. 3.1, Figure 3", _T1_QUOTE, "rung 1", "not checked", "no data",
                     "", COMMAND)
    ev = ev[ev["loss"].isin(["lclass", "infonce", "supcon", "dcl"])].copy()
    ev["rate"] = ev["translation"]
    tab = event_table(ev, ["loss"], "rate")
    verdict, parts = _collapse_vs(tab, "predicted", b, resolution)
    return Claim("LAD-T1-r1", "Sec. 3.1, Figure 3 (right)", _T1_QUOTE,
                 "rung 1: free instance embeddings (k = 4, n = 2, d = 17), normalised step; Theorem 1's rate "
                 "(the step at which the mean's translation mode flips) against the measured collapse onset",
                 verdict, "; ".join(parts), "ladder/rung1_events_base.csv; ladder/rung1_linearisation.csv", COMMAND)


def _t1_rung2(out: Path, b: float, resolution: float) -> Claim:
    ev = load(out, "rung2_events.csv")
    if ev is None:
        return Claim("LAD-T1-r2", "Sec. 3.1, Figure 3", _T1_QUOTE, "rung 2", "not checked", "no data", "", COMMAND)
    tab = event_table(ev[ev["model"] == "linear"], ["model", "optimiser", "loss"], "mapped")
    verdict, parts = _collapse_vs(tab, "predicted", b, resolution)
    return Claim("LAD-T1-r2", "Sec. 3.1, Figure 3 (right)", _T1_QUOTE,
                 "rung 2: linear encoder on the digits, GD / momentum / LARS; the rung-1 critical step mapped "
                 "through r^2/lambda_max(K) against the measured collapse onset",
                 verdict, "; ".join(parts), "ladder/rung2_events.csv; ladder/rung2_predictions.csv", COMMAND)


def _overshoot(out: Path, rung: int) -> Claim:
    cid = f"LAD-OS-r{rung}"
    if rung == 0:
        return Claim(cid, "Sec. 3.1, Figure 2", _OS_QUOTE,
                     "rung 0: the linearised normalised step at a zero-mean configuration (theory.linearisation)",
                     "holds", "L_class loses stability through the mean's translation out of the span (h = 2(K-1), "
                     "c = 2), and complete collapse attracts from the same step (both at eta = 2(K-1)/(K-2)); "
                     "Figure 3's measured onset agrees (LAD-T1-r0)", "figure3_max_lr.csv", COMMAND)
    if rung == 1:
        lin, ev = load(out, "rung1_linearisation.csv"), load(out, "rung1_events_base.csv")
        if lin is None or ev is None:
            return Claim(cid, "Sec. 3.1", _OS_QUOTE, "rung 1", "not checked", "no data", "", COMMAND)
        coll = ev[(ev["event"] == "collapse") & (ev["status"] == "bracketed")]
        losses = sorted(coll["loss"].unique())
        modes = {r["loss"]: r["closed_mode"] for _, r in lin.iterrows() if isinstance(r["closed_mode"], str)}
        first = "; ".join(f"{k}: first unstable mode {v}" for k, v in modes.items())
        if not losses:
            return Claim(cid, "Sec. 3.1", _OS_QUOTE, "rung 1: which losses collapse, and through which mode",
                         "not testable", f"no loss collapses; {first}", "ladder/rung1_events_base.csv", COMMAND)
        repulsive = all(modes.get(loss) == "translation_out" for loss in losses)
        return Claim(cid, "Sec. 3.1", _OS_QUOTE,
                     "rung 1: the losses that collapse, and the mode that loses stability first at their optimum",
                     "holds" if repulsive else "fails",
                     f"collapsing losses: {', '.join(losses)}; {first}. Losses that never collapse lose stability "
                     "through a within-vertex split (the attraction between positives overshoots), ending in "
                     "periodic orbits or wandering instead",
                     "ladder/rung1_events_base.csv; ladder/rung1_linearisation.csv", COMMAND)
    runs = load(out, "rung2_runs.csv")
    if runs is None:
        return Claim(cid, "Sec. 3.1", _OS_QUOTE, "rung 2", "not checked", "no data", "", COMMAND)
    coll = runs[runs["end_state"] == "complete_collapse"]
    if coll.empty:
        return Claim(cid, "Sec. 3.1", _OS_QUOTE, "rung 2: runs that collapse", "not testable",
                     f"no run of {len(runs)} collapsed", "ladder/rung2_runs.csv", COMMAND)
    share = coll["bias_share"] if "bias_share" in coll else pd.Series(np.nan, index=coll.index)
    bias = share.to_numpy(dtype=float) >= BIAS_DOMINATED
    frac = float(bias.mean())
    by = coll.groupby(["model", "optimiser", "loss"]).size().to_dict()
    other = coll[~bias]
    verdict = "holds" if frac >= 0.9 else "fails" if frac <= 0.1 else "inconclusive"
    detail = (f"{len(coll)} collapsed runs ({', '.join(f'{m}/{o}/{loss}: {c}' for (m, o, loss), c in by.items())}); "
              f"{int(bias.sum())} ({100 * frac:.0f} %) end with every output equal to the shared output bias "
              f"(||b2|| >= {BIAS_DOMINATED:g} mean ||y||): the bias, which LARS leaves out of its trust ratio, takes the "
              "raw-lr step that cancels the embeddings' mean and overshoots (rung 1's translation mode through a "
              "shared parameter; its predicted step is rung2_predictions.csv's lars_bias)")
    if not other.empty:
        grown = float(other["log10_weight_norm"].median())
        size = f"10^{grown:.1f}" if math.isfinite(grown) else "overflow"
        detail += (f"; the other {len(other)} collapse at lr >= {float(other['lr'].min()):.3g} with weights grown to "
                   f"{size} (one direction dominates)")
    return Claim(cid, "Sec. 3.1", _OS_QUOTE,
                 "rung 2: what the runs that collapsed end in (share of the output bias in the outputs, weight norms)",
                 verdict, detail, "ladder/rung2_runs.csv; ladder/rung2_predictions.csv", COMMAND)


def _large_lr(out: Path, rung: int) -> Claim:
    cid = f"LAD-LR-r{rung}"
    where = "Sec. 5, CLOP Prevents Collapse with Large Learning Rates"
    if rung == 0:
        f3 = pd.read_csv(figure3_path(out))
        ok = bool(np.isfinite(f3["min_collapse_lr"]).all())
        return Claim(cid, where, _LR_QUOTE, "rung 0: Figure 3's searches", "holds" if ok else "fails",
                     f"every one of {len(f3)} (k, trial) searches collapsed above its bracket (eta up to "
                     f"{float(f3['min_collapse_lr'].max()):.4g})", "figure3_max_lr.csv", "python simulations/lr_bound.py")
    name = "rung1_events_base.csv" if rung == 1 else "rung2_events.csv"
    ev = load(out, name)
    if ev is None:
        return Claim(cid, where, _LR_QUOTE, f"rung {rung}", "not checked", "no data", "", COMMAND)
    keys = ["loss"] if rung == 1 else ["model", "optimiser", "loss"]
    tab = event_table(ev, keys, "hi")
    col = tab[tab["event"] == "collapse"]
    yes = col[col["bracketed"] == col["trials"]]
    label = (lambda r: r["loss"]) if rung == 1 else (lambda r: f"{r['model']}/{r['optimiser']}/{r['loss']}")
    top = float(col["lo"].max()) if not col.empty else math.nan
    if not yes.empty:
        lst = ", ".join(f"{label(r)} from lr {r['hi']:.4g}" for _, r in yes.iterrows())
        never = ", ".join(label(r) for _, r in col[col["none"] == col["trials"]].iterrows())
        return Claim(cid, where, _LR_QUOTE, f"rung {rung}: collapse events of every loss{'' if rung == 1 else ', model and optimiser'}",
                     "holds", f"collapse in every trial: {lst}; never (up to the largest lr tested): {never or 'none'}",
                     f"ladder/{name}", COMMAND)
    return Claim(cid, where, _LR_QUOTE, f"rung {rung}: collapse events", "fails",
                 f"no collapse up to lr {top:.4g} in any loss", f"ladder/{name}", COMMAND)


def _lemma1(out: Path) -> list[Claim]:
    lem = load(out, "rung1_lemma1.csv")
    if lem is None:
        return []
    claims = []
    for _, r in lem.iterrows():
        kind = r["kind"]
        verdict = "holds" if kind == "minimum" else "fails"
        att = "never" if not math.isfinite(r["attracts_from"]) else f"from lr {r['attracts_from']:.4g}"
        result = (f"{kind}: tangent gradient {r['grad_tangent']:.1e}, Riemannian Hessian off the rotations in "
                  f"[{r['hess_min']:.4g}, {r['hess_max']:.4g}]; attracts the normalised step: {att}")
        claims.append(Claim(f"LAD-L1-{r['loss']}", "Sec. 3.1, Lemma 1; Appendix C", _L1_QUOTE,
                            f"{r['loss']} at complete collapse (all 2N = {2 * r['k'] * r['n']} views equal, d = {r['d']}): "
                            "float64 autograd gradient and Hessian on the tangent space", verdict, result,
                            "ladder/rung1_lemma1.csv", COMMAND))
    return claims


def _clop(out: Path, b: float, resolution: float) -> Claim | None:
    ev = load(out, "rung1_events_base.csv")
    if ev is None:
        return None
    floor = math.log1p(resolution) / math.sqrt(12)
    fail = ev[(ev["event"] == "failure")].copy()
    fail["mid"] = mid(fail["lo"], fail["hi"])
    parts, verdicts = [], []
    for base in ("lclass", "infonce", "supcon", "dcl"):
        a = fail[fail["loss"] == base].set_index("trial")["mid"]
        c = fail[fail["loss"] == base + "+clop"].set_index("trial")["mid"]
        pair = pd.concat([a, c], axis=1, keys=["a", "c"]).dropna()
        if len(pair) < MIN_TRIALS:
            parts.append(f"{base}: {len(pair)} paired trials (fewer than {MIN_TRIALS})")
            verdicts.append("inconclusive")
            continue
        g = floored_gain(list(np.log(pair["c"] / pair["a"]).to_numpy()), floor)
        v, reason = direction_verdict(g, b)
        verdicts.append(v)
        parts.append(f"{base}: x{math.exp(g.mean):.4g} (log {g.mean:+.4f} [{g.low:+.4f}, {g.high:+.4f}], n = {g.n}, "
                     f"margin {margin_se(g, raises_judge(b)):.1f} SE): {v} ({reason})")
    if not verdicts:
        return None
    coll = ev[ev["event"] == "collapse"].groupby("loss")["status"].agg(lambda st: (st == "bracketed").sum())
    top = ev[ev["event"] == "collapse"].groupby("loss")["lo"].max()
    for base in ("lclass", "infonce", "supcon", "dcl"):
        if base in coll and base + "+clop" in coll and coll[base] > 0:
            parts.append(f"collapse: {base} in {coll[base]} trials, {base}+clop in {coll[base + '+clop']} "
                         f"(none up to lr {top[base + '+clop']:.4g})")
    verdict = "holds" if all(v == "holds" for v in verdicts) else "fails" if all(v == "fails" for v in verdicts) \
        else "inconclusive" if all(v in ("holds", "inconclusive") for v in verdicts) else "fails"
    return Claim("LAD-CLOP-r1", "Sec. 5, CLOP Prevents Collapse with Large Learning Rates",
                 "CLOP is significantly more stable across different learning rates",
                 "rung 1: the step at which training fails, with the CLOP term (lambda = 1, batch reduction) against "
                 "without, paired by trial; negligible = the agreement band", verdict, "; ".join(parts),
                 "ladder/rung1_events_base.csv", COMMAND)


def ladder_claims(out: Path, resolution: float) -> list[Claim]:
    """Every claim of the ladder (module docstring), in the paper's order."""
    b = band(out, resolution)
    claims = [_t1_rung0(out, b), _t1_rung1(out, b, resolution), _t1_rung2(out, b, resolution)]
    claims += [_overshoot(out, r) for r in (0, 1, 2)]
    claims += _lemma1(out)
    claims += [_large_lr(out, r) for r in (0, 1, 2)]
    c = _clop(out, b, resolution)
    return claims + ([c] if c is not None else [])
