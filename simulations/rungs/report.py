"""``ladder.md``, ``ladder_rows.csv`` and ``claims.csv`` from the study's CSVs (nothing is recomputed).

The report answers, rung by rung, the question of the ladder: above which step does training end in complete
collapse, what happens instead where it does not, and does the theory (arXiv 2403.18699, Theorem 1, and the
linearisation of :mod:`theory.linearisation`) predict that step. Every number in it is read from the CSVs of
:mod:`simulations.rungs.study`; the verdicts come from :mod:`simulations.rungs.verdicts`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from clop.claims import write_claims
from clop.util.io import atomic_path, atomic_write_text
from simulations.rungs.settings import Settings
from simulations.rungs.summary import (
    MIN_TRIALS, agreement, event_table, figure3_path, horizon_excess, ladder_rows, load, read_ladder_rows,
)
from simulations.rungs.verdicts import band, ladder_claims

__all__ = ["write_report", "md_table"]


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return ""
        if math.isinf(v):
            return "inf"
        return f"{v:.4g}"
    return str(v)


def md_table(df: pd.DataFrame, cols: list[str] | None = None) -> str:
    """A Markdown table of ``df``'s columns ``cols`` (floats to 4 significant digits)."""
    if df is None or df.empty:
        return "_no data_\n"
    cols = cols or list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_fmt(r[c]).replace("|", "/") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _events_summary(ev: pd.DataFrame, keys: list[str], pred: str, b: float, resolution: float) -> pd.DataFrame:
    tab = event_table(ev, keys, pred)
    out = []
    for _, g in tab.iterrows():
        row = {k: g[k] for k in keys} | {"event": g["event"], "predicted": g["predicted"]}
        if g["none"] == g["trials"]:
            row["measured"] = f"none up to {g['lo']:.4g}"
            row["verdict"] = ""
        elif g["below"] == g["trials"]:
            row["measured"] = f"at every lr tested (>= {g['hi']:.4g})"
            row["verdict"] = ""
        else:
            row["measured"] = f"[{g['lo']:.4g}, {g['hi']:.4g}] ({g['bracketed']}/{g['trials']} bracketed)"
            if g["trials"] < MIN_TRIALS and g["log_ratios"]:
                row["verdict"] = f"ratio {math.exp(float(np.median(g['log_ratios']))):.4g} (n = {g['trials']}: no verdict)"
            else:
                v, res, _ = agreement(g["log_ratios"], b, resolution) if math.isfinite(g["predicted"]) else ("", "", "")
                row["verdict"] = f"{v}: {res}" if v else ""
        row["end state above"] = g["state_hi"]
        row["eta_emb"] = g["eta_emb_hi"]
        out.append(row)
    return pd.DataFrame(out)


def _ratio_text(df: pd.DataFrame) -> str:
    return ", ".join(f"{r['loss']}{_opt(r)} {r['ratio']:.3g}" for _, r in df.iterrows())


def _opt(r) -> str:
    return "" if r["rung"] != 2 else f" ({r['model'].split()[0]}/{r['optimiser']})"


_NAMES = {"T1": "Theorem 1's rate predicts the collapse step", "OS": "collapse comes from the repulsion's overshoot",
          "LR": "large steps can collapse"}


def _verdicts(claims, rung: int) -> str:
    got = [f"{_NAMES[c.id.split('-')[1]]}: **{c.verdict}** ({c.id})" for c in claims
           if c.id.endswith(f"-r{rung}") and c.id.split("-")[1] in _NAMES]
    return (" Verdicts: " + "; ".join(got) + ".") if got else ""


def _answer(out: Path, rows: pd.DataFrame, claims) -> list[str]:
    """The answer, one paragraph per rung, generated from the ladder's rows (medians over trials) and the claims."""
    lines = []
    r0 = rows[rows["rung"] == 0]
    if not r0.empty:
        lines.append(f"**Rung 0** (L_class, free class embeddings, Figure 3's data). Complete collapse starts at the "
                     f"corrected Theorem 1 rate 2(k-1)/(k-2): measured/predicted {r0['ratio'].min():.4g} to "
                     f"{r0['ratio'].max():.4g} for k = {', '.join(str(s.split()[0][2:]) for s in r0['setting'])}."
                     + _verdicts(claims, 0))
    r1 = rows[rows["rung"] == 1]
    if not r1.empty:
        rand = r1[r1["setting"].str.endswith("random start")]
        local = r1[r1["setting"].str.endswith("from the optimum")]
        coll = rand[(rand["event"] == "collapse") & (rand["status"] == "bracketed")]
        never = rand[(rand["event"] == "collapse") & (rand["status"] == "none")]
        fail = rand[(rand["event"] == "failure") & (rand["status"] == "bracketed")]
        close = fail[(fail["ratio"] - 1).abs() <= 0.05]
        off = fail[(fail["ratio"] - 1).abs() > 0.05]
        lfail = local[(local["event"] == "failure") & (local["status"] == "bracketed")]
        txt = ["**Rung 1** (free instance embeddings, normalised step). Complete collapse (measured/predicted step): "
               + (f"{_ratio_text(coll)}" if not coll.empty else "none")
               + (f"; no collapse up to the largest lr tested ({never['measured_lo'].min():.3g} to "
                  f"{never['measured_lo'].max():.3g}) for {', '.join(never['loss'])}" if not never.empty else "") + "."]
        txt.append("Above the predicted step the others end in periodic orbits or wander; training fails there. "
                   f"Failure from random starts within 5 % of the linearisation at the optimum: {_ratio_text(close) or 'none'}; "
                   f"off by more: {_ratio_text(off) or 'none'} (measured/predicted).")
        if not lfail.empty:
            txt.append(f"From the optimum itself the failure step matches the prediction for every loss with a finite "
                       f"one: {_ratio_text(lfail)}. Where random starts fail much earlier, they fail on the way, "
                       "before the optimum is reached; the few per cent of the CLOP losses are the distance between "
                       "the optimum linearised (trial 0's) and those the other trials reach.")
        lines.append(" ".join(txt) + _verdicts(claims, 1))
    r2 = rows[rows["rung"] == 2]
    if not r2.empty:
        coll = r2[(r2["event"] == "collapse") & (r2["status"] == "bracketed")]
        fail = r2[(r2["event"] == "failure") & (r2["status"] == "bracketed")]
        nofail = r2[(r2["event"] == "failure") & (r2["status"] == "none")]
        txt = ["**Rung 2** (linear encoder and 2-layer MLP on the digits, normalisation in the forward pass)."]
        txt.append("Complete collapse in every trial: " + (", ".join(
            f"{r['loss']}{_opt(r)} from lr {r['measured_hi']:.3g}" for _, r in coll.iterrows()) or "nowhere") + ".")
        txt.append("Failure to train, measured/predicted: " + _ratio_text(fail)
                   + (f"; no failure up to 4096 x the prediction: {', '.join(r['loss'] + _opt(r) for _, r in nofail.iterrows())}"
                      if not nofail.empty else "") + ".")
        lines.append(" ".join(txt) + _verdicts(claims, 2))
    return lines


NETWORK_RUNGS = {3: ("the digits CNN", "python -m training.rung3", "rung3/rung3.md"),
                 4: ("ResNet-50 on CIFAR-100", "python -m training.rung4 --data-root DATA --device cuda",
                     "rung4/rung4.md")}
"""The rungs trained by training.pretrain (docs/ladder.md): their model, the command that puts them on the ladder
(it writes ``ladder_rows_rung<n>.csv`` here) and their own report."""


def _network_answer(allrows: pd.DataFrame) -> list[str]:
    """One paragraph per network rung, from its ``ladder_rows_rung<n>.csv``; a rung without rows says so and names
    its command."""
    lines = []
    for n, (model, command, report) in NETWORK_RUNGS.items():
        r = allrows[allrows["rung"] == n]
        if r.empty:
            lines.append(f"**Rung {n}** ({model}): not run here (it needs a GPU and the data). `{command}` runs it "
                         "and writes its rows into this table and figure (c) (docs/ladder.md).")
            continue
        parts = []
        for _, x in r.iterrows():
            if x["status"] == "bracketed":
                what = f"the seeds collapse from lr {x['measured_hi']:g} (not at {x['measured_lo']:g})"
            elif x["status"] == "below":
                what = f"the seeds collapse already at the lowest lr, {x['measured_hi']:g}"
            else:
                what = f"at no lr up to {x['measured_lo']:g} do the seeds collapse"
            parts.append(f"{x['model']}, {x['optimiser'].upper()}: {what} ({x['note']})")
        lines.append(f"**Rung {n}** ({model}, {r['units'].iloc[0]}; a cell collapses where its seeds' mu is within "
                     "0.002 of 1 by an equivalence test; no prediction: a network has no linearisation of the kind of "
                     f"rungs 1-2; `{report}`). " + "; ".join(parts) + ".")
    return lines


def _rung1_sections(out: Path, b: float, res: float) -> list[str]:
    md = []
    lin = load(out, "rung1_linearisation.csv")
    md += ["## Rung 1: free instance embeddings", "",
           "k classes x n instances x 2 views, every view a unit vector in R^d and itself the parameter, trained by "
           "the normalised step (step, then renormalise; Appendix D). Predictions at the optimum a small step "
           "converges to (`source`: L-BFGS on L(normalise(w)); `simplex` where it reached the exact simplex): "
           "`critical` = 2/lambda_max(H_T - C) (the update's eigenvalue reaches -1), `textbook` = "
           "2/lambda_max(H_T + C) of the Riemannian Hessian, `closed_form` and its mode from theory.linearisation, "
           "`translation` = where Theorem 1's mean mode flips, `path_min` = the smallest local critical step on the "
           "small-step path from the start.", "",
           md_table(lin, ["loss", "tau", "source", "loss_opt", "rank_opt", "critical", "textbook", "closed_form",
                          "closed_mode", "translation", "path_min"]) if lin is not None else "_no data_\n"]
    ev = load(out, "rung1_events_base.csv")
    if ev is not None:
        md += ["### Measured critical steps (base setting)", "",
               f"Per loss and event: the prediction (`critical`), the measured bracket (medians over trials), the "
               f"agreement verdict (per-trial log ratios, band +-{b:.3f}), the end state just above the bracket and the "
               "embedding-space step there.", "",
               md_table(_events_summary(ev, ["loss"], "critical", b, res))]
    ex = horizon_excess(out)
    md += ["### Finite-horizon excess", "",
           "The same searches at a longer horizon: the relative excess of the measured step at the base horizon "
           "over the longer one (median over trials). It is part of the agreement band.", "", md_table(ex)]
    for part, keys, title in (("local", ["loss"], "From the optimum (plus a perturbation of 1e-4 per view)"),
                              ("k", ["loss", "k", "n", "d"], "Against k"), ("tau", ["loss", "tau"], "Against tau"),
                              ("batch", ["loss", "batch"], "Against the batch size B (instances)")):
        e = load(out, f"rung1_events_{part}.csv")
        if e is not None:
            md += [f"### {title}", "", md_table(_events_summary(e, keys, "critical", b, res))]
    mb = load(out, "rung1_minibatch.csv")
    md += ["### Minibatch predictions", "",
           "`full_batch`: the critical step with all N instances; `subproblem`: the batch as a problem of its own "
           "(B instances; closed form); `per_batch_*`: 2/lambda_max of the batch loss's tangent Hessian at the "
           "full-batch optimum over sampled batches (median, 10 % and 90 %); `expected_jacobian`: the step at which "
           "the batch-averaged Jacobian gets an eigenvalue below -1.", "",
           md_table(mb, ["loss", "batch", "full_batch", "subproblem", "per_batch_median", "per_batch_p10",
                         "per_batch_p90", "expected_jacobian"]) if mb is not None else "_no data_\n"]
    fx = load(out, "rung1_fixed_points.csv")
    md += ["### Failure modes as fixed points", "",
           "Complete collapse and class collapse (every class on one vertex of a simplex) of every loss: stationary? "
           "which kind of point? from which step does it attract the normalised step? A period-2 orbit is born "
           "where the optimum's factor passes -1, so it attracts from the optimum's critical step on.", "",
           md_table(fx, ["loss", "fixed_point", "grad_tangent", "hess_min", "hess_max", "kind", "attracts_from",
                         "attracts_for"])
           if fx is not None else "_no data_\n"]
    lem = load(out, "rung1_lemma1.csv")
    md += ["### Lemma 1: complete collapse per loss", "",
           "All 2N views equal: the tangent gradient (0: stationary), the extreme eigenvalues of the Riemannian "
           "Hessian off the rotations, the kind of point, and the step above which it attracts the normalised "
           "step (inf: never).", "",
           md_table(lem, ["loss", "grad_tangent", "c", "hess_min", "hess_max", "kind", "attracts_from"])
           if lem is not None else "_no data_\n"]
    return md


def _rung2_sections(out: Path, b: float, res: float) -> list[str]:
    md = ["## Rung 2: linear encoder and 2-layer MLP on fixed inputs", ""]
    mp = load(out, "rung2_mapping.csv")
    if mp is not None:
        g = mp.groupby(["spectrum", "loss"], sort=False).agg(
            gd=("gd", "first"), mapped=("mapped", "first"), mapped_lo=("mapped_lo", "first"),
            mapped_hi=("mapped_hi", "first"), rung1=("rung1", "first"), r2=("r2", "first"),
            lam_k_max=("lam_k_max", "first"), measured_lo=("measured_lo", "median"),
            measured_hi=("measured_hi", "median"), trials=("trial", "count")).reset_index()
        md += ["### The mapping from rung 1 (linear encoder, GD, Gaussian mixture with a chosen Gram spectrum)", "",
               "`gd` = 2/lambda_max(H_W) at the optimum; `mapped` = r^2 lr_1 / lambda_max(K) with lr_1 the rung-1 "
               "step of the loss at the encoder's views (`rung1`), [`mapped_lo`, `mapped_hi`] its bounds; "
               "`measured`: the local critical lr from starts at the optimum plus a small perturbation.", "",
               md_table(g)]
    pr, ev = load(out, "rung2_predictions.csv"), load(out, "rung2_events.csv")
    if ev is not None:
        md += ["### Training on the digits", "",
               "Predictions: GD 2/lambda_max(H), momentum 2(1+beta)/lambda_max(H), LARS the oscillation estimate "
               "(simulations.rungs.encoder_theory). `eta_emb`: the embedding-space step per training step at the "
               "bracket's upper end (rung-1 units).", "",
               md_table(_events_summary(ev, ["model", "optimiser", "loss"], "predicted", b, res))]
    runs = load(out, "rung2_runs.csv")
    if runs is not None:
        top = runs.sort_values("lr").groupby(["model", "optimiser", "loss"], sort=False).tail(1)
        md += ["End states at the largest lr tested, with the weights' growth (log10 of the total weight norm at the "
               "end) and the dead ReLU fraction:", "",
               md_table(top, ["model", "optimiser", "loss", "lr", "end_state", "loss_end", "log10_weight_norm",
                              "dead_fraction", "eta_emb"])]
    if pr is not None:
        md += ["Predictions in full:", "", md_table(pr, ["model", "optimiser", "loss", "lam_h", "kappa", "gd",
                                                         "momentum", "lars", "mapped", "rung1", "r2", "loss_opt"])]
    return md


def write_report(out: Path, settings: Settings) -> None:
    """Write ladder_rows.csv, claims.csv and ladder.md into ``out``."""
    out = Path(out)
    rows = ladder_rows(out)
    with atomic_path(out / "ladder_rows.csv") as tmp:
        rows.to_csv(tmp, index=False)
    b = band(out, settings.resolution)
    claims = ladder_claims(out, settings.resolution)
    write_claims(out / "claims.csv", claims)
    allrows = read_ladder_rows(out)
    md = ["# The ladder from Theorem 1 to training", "",
          "Which step makes training end in complete collapse (all views on one line), what happens instead where "
          "it does not, and does the theory predict that step? The CLOP paper (arXiv 2403.18699, Sec. 3.1, "
          "Appendices C-D) answers for L_class on free class embeddings (rung 0, Figure 3); the rungs above move one "
          "step at a time towards training. Units: the raw learning rate of each rung's loss (L_class as a sum over "
          "pairs: lr = eta / (2(K-1)) in Appendix D's eta), and the embedding-space step `eta_emb` (the step along "
          "the negative tangent gradient per training step, in rung-1 units). Regenerate with "
          f"`python simulations/ladder.py{' --quick' if settings.quick else ''}`.", "",
          "## Answer, rung by rung", ""] + [p for line in _answer(out, rows, claims) + _network_answer(allrows) for p in (line, "")] + [
          "## The ladder's rows", "", md_table(allrows, ["rung", "model", "optimiser", "loss", "setting", "event",
                                                         "predicted", "status", "measured_lo", "measured_hi",
                                                         "ratio", "eta_emb", "trials"]),
          "## Rung 0: L_class on free class embeddings (Figure 3)", "",
          f"Read from `{figure3_path(out).name}` (2000 steps, 5 trials per k): the collapse onset against the corrected "
          "Theorem 1 rate 2(k-1)/(k-2) (rows above, raw lr units).", ""]
    md += _rung1_sections(out, b, settings.resolution) + _rung2_sections(out, b, settings.resolution)
    md += ["## Verdicts", "", md_table(pd.DataFrame([c.__dict__ for c in claims]),
                                       ["id", "where", "verdict", "result"]),
           "## Figures", "",
           "* `ladder_a_critical_vs_k.png`: predicted and measured critical steps against k, one panel per rung;",
           "* `ladder_b_phase.png`: end states over step x tau and step x B (rung 1);",
           "* `ladder_c_ladder.png`: the ladder: measured over predicted step per rung, loss and event.", ""]
    atomic_write_text(out / "ladder.md", "\n".join(md))
