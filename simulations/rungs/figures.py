"""The ladder's figures, drawn from the CSVs only (so they can be redrawn without recomputing).

* ``ladder_a_critical_vs_k.png``: predicted (lines) and measured (markers: the bracket's mid-point, median over
  trials; error bars: the range over trials) critical step against k, one panel per rung. Rung 0: Appendix D's
  eta (Figure 3's data); rung 1: the raw lr of each loss (closed forms of :mod:`theory.linearisation`); rung 2:
  the raw lr, predicted and measured, per model and optimiser at the digits' k.
* ``ladder_b_phase.png``: every run of the rung-1 temperature and batch-size sweeps at its (lr, tau) or (lr, B),
  coloured by end state (o: trained, x: failed to train), with the predicted critical step at the optimum and,
  for B < N, the batch's own critical step.
* ``ladder_c_ladder.png``: one row per (rung, model, optimiser, loss) of ``ladder_rows*.csv``: the measured
  step divided by the predicted one, for collapse and for failure to train; an arrow marks "no event up to X".
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from clop.util.io import atomic_path
from simulations.rungs.endstate import END_STATES
from simulations.rungs.summary import figure3_path, load, mid, read_ladder_rows

__all__ = ["draw_figures", "STATE_COLOURS"]

STATE_COLOURS = dict(zip(END_STATES, ("#d62728", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f", "#ff7f0e",
                                      "#1f77b4", "#000000")))
_LOSS_COLOURS = {"lclass": "#d62728", "infonce": "#1f77b4", "supcon": "#2ca02c", "dcl": "#9467bd"}


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight")


def _panel_rung0(ax, out: Path) -> None:
    path = figure3_path(out)
    if not path.exists():
        ax.text(0.5, 0.5, "figure3_max_lr.csv missing", ha="center", transform=ax.transAxes)
        return
    f3 = pd.read_csv(path)
    g = f3.groupby("k")
    ks = np.array(sorted(f3["k"].unique()))
    m = g.apply(lambda d: np.median(mid(d["max_lr"], d["min_collapse_lr"]))).reindex(ks)
    ax.plot(ks, g["critical_lr"].first().reindex(ks), "k-", label="predicted: 2(k-1)/(k-2)")
    ax.plot(ks, g["paper_closed_form"].first().reindex(ks), "k:", label="printed bound (Eq. 2)")
    ax.plot(ks, m, "o", color=_LOSS_COLOURS["lclass"], ms=4, label="measured collapse onset")
    ax.set_xscale("log")
    ax.set_xlabel("k (class embeddings)")
    ax.set_ylabel("critical step, Appendix D's eta")
    ax.set_title("rung 0: L_class, free class embeddings\n(Figure 3 data, m = 100, 2000 steps)")
    ax.legend(fontsize=7)


def _panel_rung1(ax, out: Path) -> None:
    cf = load(out, "rung1_closed_forms.csv")
    ev = load(out, "rung1_events_k.csv")
    if cf is not None:
        for loss, g in cf.groupby("loss", sort=False):
            ax.plot(g["k"], g["closed_form"], "-", color=_LOSS_COLOURS.get(loss, "grey"), lw=1,
                    label=f"{loss} predicted" + (f" (tau {g['tau'].iloc[0]:g})" if g["tau"].notna().any() else ""))
    if ev is not None:
        for (loss, event), g in ev.groupby(["loss", "event"], sort=False):
            rows = []
            for k, h in g.groupby("k"):
                mm = mid(h["lo"], h["hi"])
                if np.isfinite(mm).any():
                    rows.append((k, np.nanmedian(mm), np.nanmin(mm), np.nanmax(mm)))
                elif event == "collapse":
                    ax.annotate("", xy=(k, h["lo"].median() * 2), xytext=(k, h["lo"].median()),
                                arrowprops=dict(arrowstyle="->", color=_LOSS_COLOURS.get(loss, "grey")))
            if rows:
                a = np.array(rows)
                ax.errorbar(a[:, 0], a[:, 1], yerr=[a[:, 1] - a[:, 2], a[:, 3] - a[:, 1]],
                            fmt="o" if event == "failure" else "x", color=_LOSS_COLOURS.get(loss, "grey"), ms=5,
                            label=f"{loss} measured {event}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("k (classes; n = 1 instance, SupCon n = 2)")
    ax.set_ylabel("critical step, raw lr of the loss")
    ax.set_title("rung 1: free instance embeddings, normalised step\n(arrows: no collapse up to the arrow's base)")
    if ax.get_legend_handles_labels()[0]:  # a study run with --only may have no k sweep to show
        ax.legend(fontsize=6, ncol=2)


def _panel_rung2(ax, out: Path) -> None:
    ev = load(out, "rung2_events.csv")
    if ev is None:
        ax.text(0.5, 0.5, "no rung-2 data", ha="center", transform=ax.transAxes)
        return
    labels, x = [], 0
    for (model, opt, loss), g in ev.groupby(["model", "optimiser", "loss"], sort=False):
        colour = _LOSS_COLOURS.get(loss, "grey")
        ax.plot(x, g["predicted"].iloc[0], "_", color=colour, ms=14, mew=2)
        for event, marker in (("failure", "o"), ("collapse", "x")):
            h = g[g["event"] == event]
            mm = mid(h["lo"], h["hi"])
            if np.isfinite(mm).any():
                ax.plot(x, np.nanmedian(mm), marker, color=colour, ms=6)
            elif len(h):
                ax.annotate("", xy=(x, h["lo"].median() * 3), xytext=(x, h["lo"].median()),
                            arrowprops=dict(arrowstyle="->", color=colour, lw=1 if event == "failure" else 2))
        labels.append(f"{model[:3]}/{opt[:4]}/{loss}")
        x += 1
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=6, rotation=90)
    ax.set_yscale("log")
    ax.set_ylabel("critical lr (raw)")
    k = int(ev["k"].iloc[0])
    ax.set_title(f"rung 2: encoders on the digits (k = {k})\n- predicted, o failure, x collapse, arrow: none up to")


def figure_a(out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    _panel_rung0(axes[0], out)
    _panel_rung1(axes[1], out)
    _panel_rung2(axes[2], out)
    fig.suptitle("(a) predicted vs measured critical step against k, one panel per rung", y=1.04)
    path = Path(out) / "ladder_a_critical_vs_k.png"
    _save(fig, path)
    plt.close(fig)
    return path


def _phase(ax, runs: pd.DataFrame, ev: pd.DataFrame | None, ycol: str, title: str, extra: pd.DataFrame | None) -> None:
    for state, g in runs.groupby("end_state"):
        jitter = 1 + 0.04 * (g["trial"].to_numpy() - 1)
        for failed, marker in ((False, "o"), (True, "x")):
            h = g[g["failed"].astype(bool) == failed]
            ax.scatter(h["lr"], h[ycol] * jitter[g["failed"].astype(bool).to_numpy() == failed], s=12,
                       marker=marker, color=STATE_COLOURS.get(state, "grey"), label=state)
    if ev is not None and "critical" in ev:
        pred = ev.groupby(ycol)["critical"].first()
        ax.scatter(pred.to_numpy(), pred.index.to_numpy(), marker="|", s=300, color="k", linewidths=2,
                   label="predicted: the optimum's critical step")
    if extra is not None:
        ax.scatter(extra["subproblem"], extra["batch"], marker="|", s=300, color="grey", linewidths=2,
                   label="predicted: the batch as its own problem")
    ax.set_xscale("log")
    ax.set_yscale("log")
    values = sorted(runs[ycol].unique())
    ax.set_yticks(values)
    ax.set_yticklabels([f"{v:g}" for v in values])
    ax.minorticks_off()
    ax.set_xlabel("lr (raw)")
    ax.set_ylabel("tau" if ycol == "tau" else "B (instances per step; N = 8 is full batch)")
    ax.set_title(title, fontsize=9)


def figure_b(out: Path) -> Path:
    import matplotlib.pyplot as plt

    panels = []
    mb = load(out, "rung1_minibatch.csv")
    for part, ycol in (("tau", "tau"), ("batch", "batch")):
        runs = load(out, f"rung1_runs_{part}.csv")
        if runs is None:
            continue
        ev = load(out, f"rung1_events_{part}.csv")
        base_runs, base_ev = load(out, "rung1_runs_base.csv"), load(out, "rung1_events_base.csv")
        for loss in runs["loss"].unique():
            r = runs[runs["loss"] == loss]
            e = ev[ev["loss"] == loss] if ev is not None else None
            if part == "batch" and base_runs is not None:  # full batch B = N from the base part
                r = pd.concat([r, base_runs[base_runs["loss"] == loss]], ignore_index=True)
                if e is not None and base_ev is not None:
                    e = pd.concat([e, base_ev[base_ev["loss"] == loss]], ignore_index=True)
            extra = mb[mb["loss"] == loss] if (part == "batch" and mb is not None) else None
            panels.append((r, e, ycol, f"rung 1, {loss}: end state over lr x {ycol}", extra))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 4), squeeze=False)
    for ax, (r, e, ycol, title, extra) in zip(axes[0], panels):
        _phase(ax, r, e, ycol, title, extra)
    if not panels:  # a study run with --only and neither r1_tau nor r1_batch
        axes[0][0].text(0.5, 0.5, "no tau or B sweep in this study", ha="center", va="center")
        axes[0][0].set_axis_off()
    handles = {}
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(8, len(handles)), fontsize=7)
    fig.suptitle("(b) phase diagrams, rung 1: end state of every run (colour; o trained, x failed to train) over "
                 "step x tau and step x B")
    fig.subplots_adjust(bottom=0.22)
    path = Path(out) / "ladder_b_phase.png"
    _save(fig, path)
    plt.close(fig)
    return path


def _unpredicted(row) -> str:
    """What a row without a finite prediction says: a rung that has no linearisation (its ``prediction`` starts
    with "none") says so; otherwise the linearisation says the optimum never loses stability."""
    return "none" if str(row["prediction"]).startswith("none") else "never unstable"


def figure_c(out: Path) -> Path:
    import matplotlib.pyplot as plt

    rows = read_ladder_rows(out)
    key_cols = ["rung", "model", "optimiser", "loss", "setting"]
    keys = rows[key_cols].drop_duplicates()
    fig, ax = plt.subplots(figsize=(11, 0.3 * max(len(keys), 4) + 1.6))
    ylabels, xs = [], [1.0]
    for y, (_, key) in enumerate(keys.iterrows()):
        sel = (rows[key_cols].astype(str) == key.astype(str).to_numpy()).all(axis=1)
        for _, r in rows[sel].iterrows():
            colour = "#d62728" if r["event"] == "collapse" else "#1f77b4"
            pred = float(r["predicted"])
            off = 0.15 if r["event"] == "collapse" else -0.15
            if not (math.isfinite(pred) and pred > 0):
                if r["status"] == "none":
                    ax.text(1.1, y + off, f"predicted: {_unpredicted(r)}; no {r['event']} up to lr "
                            f"{float(r['measured_lo']):.3g}", fontsize=5, va="center", color=colour)
                elif r["status"] in ("bracketed", "below"):
                    where = (f"below lr {float(r['measured_hi']):.3g}" if r["status"] == "below" else
                             f"between lr {float(r['measured_lo']):.3g} and {float(r['measured_hi']):.3g}")
                    ax.text(1.1, y + off, f"predicted: {_unpredicted(r)}; {r['event']} {where}", fontsize=5,
                            va="center", color=colour)
                continue
            if r["status"] in ("bracketed", "mixed") and math.isfinite(float(r["measured_hi"])):
                lo, hi = float(r["measured_lo"]) / pred, float(r["measured_hi"]) / pred
                ax.plot([lo, hi], [y + off] * 2, "-", color=colour, lw=3)
                ax.plot(math.sqrt(lo * hi), y + off, "x" if r["event"] == "collapse" else "o", color=colour, ms=5)
                xs += [lo, hi]
            elif r["status"] == "none":
                x0 = float(r["measured_lo"]) / pred
                ax.annotate("", xy=(x0 * 3, y + off), xytext=(x0, y + off),
                            arrowprops=dict(arrowstyle="->", color=colour, lw=1))
                ax.text(x0 * 3.3, y + off, f"no {r['event']} up to lr {float(r['measured_lo']):.3g}", fontsize=5,
                        va="center", color=colour)
                xs += [x0 * 60]
        setting = str(key["setting"]).replace(", random start", "").replace(", from the optimum", ", from optimum")
        model = "" if int(key["rung"]) != 2 else str(key["model"]).split()[0] + " "
        ylabels.append(f"r{key['rung']} {key['loss']} [{model}{key['optimiser']}] {setting}")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    finite = [v for v in xs if math.isfinite(v) and v > 0]
    ax.set_xlim(min(finite) / 3, max(finite) * 3)
    ax.set_yticks(range(len(ylabels)))
    ax.set_yticklabels(ylabels, fontsize=6)
    ax.set_ylim(len(ylabels) - 0.5, -0.5)
    ax.set_xlabel("measured critical step / predicted critical step (both in the rung's raw lr; 1 = predicted)")
    ax.plot([], [], "x", color="#d62728", label="complete collapse (bracket over trials)")
    ax.plot([], [], "o", color="#1f77b4", label="failure to train (bracket over trials)")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("(c) the ladder: where collapse and failure start, relative to each rung's prediction\n"
                 "(rung 0: Theorem 1's corrected rate; rung 1: linearisation at the optimum; "
                 "rung 2: 2/lambda_max(H), 2(1+beta)/lambda_max(H), LARS estimate)", fontsize=9)
    path = Path(out) / "ladder_c_ladder.png"
    _save(fig, path)
    plt.close(fig)
    return path


def draw_figures(out: Path) -> list[Path]:
    """Draw the three figures into ``out``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    return [figure_a(out), figure_b(out), figure_c(out)]
