"""CPLearn's four collapse claims on the synthetic 3-D data, beside InfoNCE (and SupCon on request), with and without CLOP.

Paper under test: Sansone, Lebailly & Tuytelaars (2025), arXiv 2410.04959 (CPLearn); the data, network and
training are those of Table 5 of the CLOP paper (arXiv 2403.18699, Sec. 4, Appendix B; :mod:`simulations.ffn`).
Per data regime (:data:`simulations.ffn.data.REGIMES`: separable, overlapping) and seed, up to six runs on the same
data, labeled set, initial FFN weights and views: CPLearn (:mod:`simulations.ffn.cplearn`), InfoNCE
(:func:`simulations.ffn.train.train_runs`, the default engine) and, when asked for, SupCon (the autograd of
:mod:`simulations.ffn.cplearn`), each without and with the CLOP term.

Measured on the 500 clean points (:func:`clop.collapse_modes.collapse_modes`): for every run the unit FFN output
y (space ``y``: the representation every loss shapes, what Table 5's KNN reads), and for CPLearn also its
projector's embedding h with the code logits (space ``h``, where the codes act). KNN accuracy (k = 5, the 10 %
labeled points, :func:`simulations.ffn.data.knn_accuracy`) on unit y.

Verdicts (:func:`claims`, :func:`clop.collapse_modes.mode_claims`): CPLearn without CLOP over the seeds, one cell
per regime, one claim ``CPL-<mode>`` per mode. Representation and dimensional collapse are read on y: h is a
function of the 3-D y (h = tanh(BN(Linear(y)))), so its 32-D covariance spectrum falls by construction, whatever
the loss does. Cluster and intracluster collapse are read on h and its codes. The same rules applied to every
method's y (:func:`rule_table`) put InfoNCE and SupCon beside CPLearn.

Files (:func:`write_outputs`): cplearn_runs.csv (one row per run and space), cplearn_spectra.csv (log10 covariance
eigenvalues per run and space), cplearn_rules.csv (:func:`rule_table`), claims.csv, cplearn.md, cplearn.png.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from clop.claims import Claim, write_claims
from clop.collapse_modes import RULES, collapse_modes, log_spectrum, mode_claims, verdict
from simulations.ffn.cplearn import BETA, SUPCON_TAU, C, F, train_extra
from simulations.ffn.data import REGIMES, knn_accuracy, make_data, stack_data
from simulations.ffn.train import train_runs

__all__ = [
    "CONFIGS",
    "DEFAULT_LOSSES",
    "DISPLAY",
    "OUTPUTS",
    "RUN_COLUMNS",
    "SPACE",
    "claims",
    "markdown",
    "plot",
    "rule_table",
    "run_regime",
    "write_outputs",
]

CONFIGS = (("cplearn", False), ("cplearn", True), ("supcon", False), ("supcon", True), ("infonce", False),
           ("infonce", True))
DISPLAY = {"cplearn": "CPLearn", "supcon": "SupCon", "infonce": "InfoNCE"}
DEFAULT_LOSSES = ("cplearn", "infonce")
"""The default methods; SupCon (autograd, one seed at a time, the slowest) is asked for by name."""
MEASURES = ("mu", "stable_rank", "decades", "dim", "code_share", "code_entropy", "codes_used", "within_cluster",
            "cluster_points", "within_class")
RUN_COLUMNS = ("regime", "loss", "clop", "seed", "space", "points", *MEASURES, "knn_accuracy")
OUTPUTS = ("cplearn_runs.csv", "cplearn_spectra.csv", "cplearn_rules.csv", "claims.csv", "cplearn.md", "cplearn.png")
COMMAND = "python simulations/cplearn_synthetic.py --out paper_figures/cplearn"
SPACE = {"representation": "y", "dimensional": "y", "cluster": "h", "intracluster": "h"}
"""The space each mode is read in (module docstring)."""


def _label(loss: str, clop: bool) -> str:
    return f"{DISPLAY[loss]}{' + CLOP' if clop else ''}"


def _measure(regime, loss, clop, seeds, data, y, h=None, logits=None):
    rows, spectra = [], []
    for i, seed in enumerate(seeds):
        unit_y = torch.nn.functional.normalize(y[i].double(), dim=1)
        knn = knn_accuracy(unit_y.numpy(), data.y[i].numpy(), data.labeled[i].numpy())
        spaces = [("y", unit_y, None)] + ([("h", h[i], logits[i])] if h is not None else [])
        for space, emb, lg in spaces:
            m = collapse_modes(emb, logits=lg, labels=data.y[i])
            rows.append({"regime": regime, "loss": loss, "clop": clop, "seed": seed, "space": space,
                         "points": emb.shape[0], **{k: m.get(k, np.nan) for k in MEASURES},
                         "knn_accuracy": knn if space == "y" else np.nan})
            spectra += [{"regime": regime, "loss": loss, "clop": clop, "seed": seed, "space": space, "index": j + 1,
                         "log10_eigenvalue": v} for j, v in enumerate(log_spectrum(emb))]
    return rows, spectra


def run_regime(regime: str, seeds: list[int], epochs: int, losses: tuple[str, ...] = DEFAULT_LOSSES,
               progress=None) -> tuple[list[dict], list[dict]]:
    """Train the configurations of :data:`CONFIGS` whose loss is in ``losses`` on ``seeds`` of ``regime`` and
    measure them: (runs rows, spectra rows). ``progress``: a callable taking one line of text per configuration."""
    unknown = sorted(set(losses) - set(DISPLAY))
    if unknown or "cplearn" not in losses:
        raise ValueError(f"losses must include cplearn and be among {list(DISPLAY)}; got {list(losses)}")
    data = stack_data([make_data(s, **REGIMES[regime]) for s in seeds])
    rows, spectra = [], []
    for loss, clop in [cfg for cfg in CONFIGS if cfg[0] in losses]:
        if loss == "infonce":
            y = train_runs("infonce", clop, data, epochs=epochs)
            out = {"y": y}
        else:
            out = train_extra(loss, clop, data, epochs=epochs)
        r, s = _measure(regime, loss, clop, seeds, data, out["y"], out.get("h"), out.get("logits"))
        rows += r
        spectra += s
        if progress is not None:
            progress(f"{regime}: {_label(loss, clop)} ({len(seeds)} seeds x {epochs} epochs) done")
    return rows, spectra


def _per_seed(g: pd.DataFrame) -> pd.DataFrame:
    """One row per seed of one (regime, method) with each rule's measure taken from the space :data:`SPACE` names."""
    cols = {}
    for mode, rule in RULES.items():
        cols[rule.measure] = g[g["space"] == SPACE[mode]].set_index("seed")[rule.measure]
    return pd.DataFrame(cols)


def claims(runs: pd.DataFrame) -> list[Claim]:
    """``CPL-<mode>`` from CPLearn without CLOP over the seeds, one cell per regime (module docstring)."""
    cp = runs[(runs["loss"] == "cplearn") & ~runs["clop"].astype(bool)]
    cells = {regime: _per_seed(g) for regime, g in cp.groupby("regime", sort=False)}
    seeds = int(cp["seed"].nunique()) if len(cp) else 0
    setting = (f"CPLearn (f = {F}, c = {C}, beta = {BETA:g}) on the 500 clean points of the synthetic 3-D data (CLOP "
               f"paper Sec. 4; FFN 3-32-32-3, Table 5's training), {seeds} seeds per regime, representation and "
               "dimensional modes read on the unit FFN output y, cluster modes on the projector's h and its codes")
    return mode_claims(cells, id_prefix="CPL", setting=setting,
                       evidence="cplearn/cplearn.md; cplearn/cplearn_runs.csv; cplearn/cplearn_rules.csv",
                       command=COMMAND)


def rule_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every rule of :data:`clop.collapse_modes.RULES` applied to every (regime, method, CLOP, space) that has its
    measure: mean, 95 % interval of the signed distance to the threshold, verdict."""
    rows = []
    for (regime, loss, clop, space), g in runs.groupby(["regime", "loss", "clop", "space"], sort=False):
        for mode, rule in RULES.items():
            values = g[rule.measure].to_numpy(dtype=float)
            if not np.isfinite(values).any():
                continue
            v, why, gain = verdict(values, rule)
            rows.append({"regime": regime, "loss": loss, "clop": bool(clop), "space": space, "mode": mode,
                         "measure": rule.measure, "mean": float(np.nanmean(values)), "seeds": gain.n,
                         "distance_mean": gain.mean, "distance_low": gain.low, "distance_high": gain.high,
                         "verdict": v, "reason": why})
    return pd.DataFrame(rows)


def _summary(runs: pd.DataFrame) -> list[str]:
    cols = [("mu", "mu"), ("stable_rank", "stable rank"), ("decades", "decades"), ("code_entropy", "H(p-bar)/log c"),
            ("codes_used", "codes used"), ("within_cluster", "within-cluster"), ("within_class", "within-class"),
            ("knn_accuracy", "KNN acc.")]
    lines = ["| regime | method | space | " + " | ".join(name for _, name in cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for (regime, loss, clop, space), g in runs.groupby(["regime", "loss", "clop", "space"], sort=False):
        cells = []
        for col, _ in cols:
            v = g[col].to_numpy(dtype=float)
            cells.append("-" if not np.isfinite(v).any() else
                         f"{np.nanmean(v):.3g} ± {np.nanstd(v, ddof=1) if np.isfinite(v).sum() > 1 else 0:.2g}")
        lines.append(f"| {regime} | {_label(loss, bool(clop))} | {space} | " + " | ".join(cells) + " |")
    return lines


def _rule_lines(rules: pd.DataFrame) -> list[str]:
    modes = [m for m in RULES if m in set(rules["mode"])]
    lines = ["| regime | method | space | " + " | ".join(modes) + " |", "|---|---|---|" + "---|" * len(modes)]
    for (regime, loss, clop, space), g in rules.groupby(["regime", "loss", "clop", "space"], sort=False):
        by = g.set_index("mode")
        cells = [f"{by.at[m, 'verdict']} ({by.at[m, 'mean']:.3g})" if m in by.index else "-" for m in modes]
        lines.append(f"| {regime} | {_label(loss, bool(clop))} | {space} | " + " | ".join(cells) + " |")
    return lines


def markdown(runs: pd.DataFrame, rules: pd.DataFrame, cl: list[Claim], settings: dict, runtime_s: float | None) -> str:
    """cplearn.md."""
    others = " and ".join(DISPLAY[name] for name in DISPLAY if name != "cplearn" and name in set(runs["loss"]))
    lines = [
        "# CPLearn's collapse claims on the synthetic 3-D data",
        "",
        "Sansone, Lebailly & Tuytelaars (2025), *Collapse-Proof Non-Contrastive Self-Supervised Learning*, ICML, "
        "arXiv 2410.04959: \"" + cl[0].quote + "\" (abstract; the paper's theorems were not available to compare "
        "with). Tested here on the synthetic data of the CLOP paper's Sec. 4 (the regimes of Table 5)"
        + (f", beside {others}" if others else "") + ", each method without and with the CLOP term.",
        "",
        "## Setting",
        "",
        "- " + ", ".join(f"{k} {v}" for k, v in settings.items()),
        (f"- CPLearn: the FFN's output y (3-D) goes through the projector h = tanh(BN(Linear(y))) in (-1, 1)^{F}, "
        f"logits h W / tau with {C} fixed random +-1 codes, tau = f / (sqrt(100) log((1 - eps (c - 1))/eps)), "
        f"beta = {BETA:g}; the loss of `clop.losses.cplearn` (autograd). InfoNCE by the Table 5 engine. "
        + (f"SupCon (tau {SUPCON_TAU:g}) by autograd on y, the unlabeled points' only positive their other view. "
           if "supcon" in set(runs["loss"]) else "")
        + "The CLOP term acts on y as in Table 5. Same seed = same data, labeled set, FFN start and views for "
        "every method."),
        ("- Space `y`: the unit FFN output of every method (the representation; what KNN reads). Space `h`: CPLearn's "
        "projector embedding, where its codes act. Representation and dimensional collapse are decided on y (h is a "
        "function of the 3-D y, so its 32-D spectrum falls by construction); cluster and intracluster collapse on h."),
        "",
        "## Verdicts (CPLearn without CLOP)",
        "",
    ]
    for c in cl:
        lines.append(f"- **{c.id}: {c.verdict}** — {c.result}.")
    lines += ["", "## The same rules for every method (verdict, mean over seeds)", ""] + _rule_lines(rules)
    lines += ["", "## Measures (mean ± standard deviation over seeds)", ""] + _summary(runs)
    lines += ["", "![spectra and cluster measures](cplearn.png)", "",
              "Columns: mu = norm of the mean unit embedding (1 = representation collapse); stable rank of the "
              "covariance; decades = log10 of its largest over its smallest non-zero eigenvalue; H(p-bar)/log c = "
              "entropy of the mean code assignment over its largest value (0 = every point on one code); codes used = "
              "distinct argmax codes; within-cluster = within-code share of the variance of the unit embedding "
              "(0 = intracluster collapse); within-class = the same with the classes as clusters. Rules: "
              + "; ".join(f"{m}: {r.text}" for m, r in RULES.items()) + ". Decided with clop.stats (95 % t-intervals "
              "over seeds, 2 SE margins, Holm's correction over the regimes for a claim's `fails`).",
              ""]
    if runtime_s is not None:
        lines.append(f"Run time: {runtime_s:.0f} s.")
    return "\n".join(lines) + "\n"


def plot(runs: pd.DataFrame, spectra: pd.DataFrame, path) -> None:
    """cplearn.png: per regime (rows) the covariance spectra of every method's unit y and of CPLearn's h (mean over
    seeds of log10 eigenvalues), and CPLearn's entropy of the mean assignment and within-cluster share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    regimes = list(dict.fromkeys(runs["regime"]))
    fig, axes = plt.subplots(len(regimes), 3, figsize=(16, 4.6 * len(regimes)), squeeze=False)
    colors = dict(zip(CONFIGS, plt.cm.tab10(np.arange(len(CONFIGS)))))
    for i, regime in enumerate(regimes):
        for j, space in enumerate(("y", "h")):
            ax = axes[i, j]
            sp = spectra[(spectra["regime"] == regime) & (spectra["space"] == space)]
            for (loss, clop), g in sp.groupby(["loss", "clop"], sort=False):
                v = g.replace(-np.inf, np.nan).groupby("index")["log10_eigenvalue"].mean()
                ax.plot(v.index, v.values, "o-", ms=3, color=colors[(loss, bool(clop))], label=_label(loss, bool(clop)))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("eigenvalue rank index")
            ax.set_ylabel("log10 eigenvalue of the embedding covariance")
            what = f"CPLearn's projector embedding h ({F}-d)" if space == "h" else "unit FFN output y (3-d)"
            ax.set_title(f"{regime}: spectrum of {what}")
            ax.legend(fontsize=8)
        ax = axes[i, 2]
        cp = runs[(runs["regime"] == regime) & (runs["loss"] == "cplearn") & (runs["space"] == "h")]
        names = ["code_entropy", "within_cluster", "within_class"]
        for k, (clop, g) in enumerate(cp.groupby("clop")):
            means = [g[n].mean() for n in names]
            errs = [g[n].std(ddof=1) if len(g) > 1 else 0 for n in names]
            ax.bar(np.arange(len(names)) + 0.38 * k, means, 0.36, yerr=errs, capsize=3,
                   label=f"CPLearn{' + CLOP' if clop else ''}", color=colors[("cplearn", bool(clop))])
        ax.axhline(RULES["cluster"].threshold, color="gray", ls=":", lw=1, label="cluster-collapse threshold 0.5")
        ax.set_xticks(np.arange(len(names)) + 0.19, ["H(p-bar) / log c", "within-cluster share", "within-class share"])
        ax.set_ylim(0, 1)
        ax.set_ylabel("value in h (mean ± s.d. over seeds)")
        ax.set_title(f"{regime}: CPLearn's codes ({C}) and clusters")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(stage, runs: pd.DataFrame, spectra: pd.DataFrame, settings: dict,
                  runtime_s: float | None) -> list[Claim]:
    """Write :data:`OUTPUTS` through ``stage`` (:func:`clop.util.io.staged_outputs`); returns the claims."""
    cl = claims(runs)
    rules = rule_table(runs)
    runs.to_csv(stage("cplearn_runs.csv"), index=False)
    spectra.to_csv(stage("cplearn_spectra.csv"), index=False)
    rules.to_csv(stage("cplearn_rules.csv"), index=False)
    write_claims(stage("claims.csv"), cl)
    stage("cplearn.md").write_text(markdown(runs, rules, cl, settings, runtime_s))
    plot(runs, spectra, stage("cplearn.png"))
    return cl
