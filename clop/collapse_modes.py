"""The four training failure modes that CPLearn claims to avoid, measured on an embedding, and their decision rules.

Paper: Sansone, Lebailly & Tuytelaars (2025), "Collapse-Proof Non-Contrastive Self-Supervised Learning", ICML,
arXiv 2410.04959. Its abstract: the design "suffices to avoid known training failure modes, such as
representation, dimensional, cluster, and intracluster collapses". The modes, as the literature names them:
representation collapse, every input mapped to one vector; dimensional collapse (Jing et al. 2021,
"Understanding Dimensional Collapse in Contrastive Self-supervised Learning", ICLR 2022), the embeddings span a
lower-dimensional subspace, seen as singular values of the embedding covariance that fall to zero; cluster
collapse, the samples are assigned to a subset of the codes (prototypes) only; intracluster collapse, the
samples of one cluster become indistinguishable.

For an embedding E: (N, D) (float64 inside) :func:`collapse_modes` measures:

* ``mu``: ||mean of the unit rows of E|| (:func:`clop.metrics.mean_norm`), 1 at representation collapse;
* ``stable_rank`` of the covariance of E (:func:`clop.metrics.stable_rank`, in [1, D]) and ``decades``: log10 of
  its largest over its smallest non-zero eigenvalue, how far the spectrum falls (round-off zeroed by the rule of
  :mod:`clop.metrics`); the spectrum itself is :func:`log_spectrum`, the log10 eigenvalues of the covariance,
  which are its singular values (Jing et al.'s plot);
* with code logits (N, c): ``code_entropy`` = H(p-bar) / log c, the entropy of the mean assignment
  p-bar = mean over rows of softmax(logits) against its largest value log c (1 = every code used equally,
  0 = one code), ``code_share`` = exp(H(p-bar)) / c (the effective share of the codes used) and ``codes_used``
  (distinct argmax codes);
* ``within_cluster``: the within-cluster sum of squares of the unit rows over their total sum of squares, the
  clusters being the argmax codes, over the samples in clusters of at least two (``cluster_points`` of them);
  0 at intracluster collapse. With labels, ``within_class``: the same with the classes as clusters.

Decision rules (:data:`RULES`, :func:`verdict`, :func:`mode_claims`): a mode is avoided ("holds") when the
measure clears its collapse threshold on the right side by more than a negligible band, over seeds with
:mod:`clop.stats` (95 % t-intervals, 2 SE margins, at least 6 seeds, :func:`clop.stats.direction_verdict` on
the signed distance to the threshold), and "fails" when it lies on the collapsed side or within the band. The
thresholds are ours: mu below 0.9 (representation); a covariance spectrum that falls less than 3 decades
(dimensional: no direction 1000 times weaker than the strongest); an entropy of the mean assignment above
half of log c, i.e. more than sqrt(c) codes effectively used (cluster); a within-cluster share of at least 1 %
of the variance (intracluster).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from clop import stats
from clop.claims import Claim
from clop.metrics import covariance_eigenvalues, mean_norm, stable_rank

__all__ = [
    "MODES",
    "QUOTE",
    "RULES",
    "WHERE",
    "Rule",
    "code_usage",
    "collapse_modes",
    "log_spectrum",
    "mode_claims",
    "verdict",
    "within_cluster",
]


def _matrix(z: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(z).detach().to("cpu", torch.float64)
    if t.dim() != 2 or t.shape[0] < 2:
        raise ValueError(f"{name} must be a matrix of shape (N, D) with N >= 2; got shape {tuple(t.shape)}")
    return t


def log_spectrum(z: Any) -> np.ndarray:
    """log10 of the eigenvalues (= singular values) of the covariance of z: (N, D), descending; -inf where the
    round-off rule of :func:`clop.metrics.covariance_eigenvalues` zeroes one."""
    w = covariance_eigenvalues(_matrix(z, "z")).numpy()
    with np.errstate(divide="ignore"):
        return np.log10(w)


def code_usage(logits: Any) -> dict[str, float]:
    """``code_share``, ``code_entropy`` and ``codes_used`` of code logits (N, c), c >= 2 (module docstring)."""
    t = _matrix(logits, "logits")
    n, c = t.shape
    if c < 2:
        raise ValueError(f"logits must have c >= 2 columns; got shape {tuple(t.shape)}")
    log_mean = torch.logsumexp(torch.log_softmax(t, dim=1), dim=0) - math.log(n)
    entropy = float(-(log_mean.exp() * log_mean).sum())
    return {"code_share": math.exp(entropy) / c, "code_entropy": entropy / math.log(c),
            "codes_used": float(t.argmax(dim=1).unique().numel())}


def within_cluster(z: Any, assign: Any, min_size: int = 2) -> tuple[float, int]:
    """(within-cluster share, samples counted): the unit rows of z: (N, D), clusters ``assign``: (N,) integers;
    only clusters with at least ``min_size`` members count. NaN when fewer than two samples count or they do
    not vary."""
    u = torch.nn.functional.normalize(_matrix(z, "z"), dim=1)
    a = torch.as_tensor(assign).reshape(-1).to("cpu")
    if a.numel() != u.shape[0]:
        raise ValueError(f"assign must have N = {u.shape[0]} entries; got {a.numel()}")
    ids, counts = a.unique(return_counts=True)
    keep = torch.isin(a, ids[counts >= min_size])
    if int(keep.sum()) < 2:
        return math.nan, int(keep.sum())
    u, a = u[keep], a[keep]
    total = float(((u - u.mean(0)) ** 2).sum())
    within = sum(float(((u[a == i] - u[a == i].mean(0)) ** 2).sum()) for i in a.unique())
    return (within / total if total > 0 else math.nan), int(keep.sum())


def collapse_modes(emb: Any, *, logits: Any = None, labels: Any = None) -> dict[str, float]:
    """The measures of the module docstring for embeddings ``emb`` (N, D); code measures with ``logits`` (N, c),
    ``within_class`` with ``labels`` (N,)."""
    e = _matrix(emb, "emb")
    w = covariance_eigenvalues(e)
    positive = w[w > 0]
    out = {"mu": mean_norm(e, normalize=True), "stable_rank": stable_rank(e), "dim": float(e.shape[1]),
           "decades": float(torch.log10(positive[0] / positive[-1])) if positive.numel() else math.nan}
    if logits is not None:
        lg = _matrix(logits, "logits")
        if lg.shape[0] != e.shape[0]:
            raise ValueError(f"logits must have N = {e.shape[0]} rows like emb; got shape {tuple(lg.shape)}")
        out.update(code_usage(lg))
        out["within_cluster"], points = within_cluster(e, lg.argmax(dim=1))
        out["cluster_points"] = float(points)
    if labels is not None:
        out["within_class"] = within_cluster(e, labels)[0]
    return out


@dataclasses.dataclass(frozen=True)
class Rule:
    """How one mode is decided from a measure over seeds: the measure must lie ``side`` ("below" or "above")
    ``threshold`` by more than ``negligible`` (:func:`clop.stats.direction_verdict` on the signed distance to
    the threshold, positive on the side where the mode is avoided); ``resolution`` floors the spread over seeds."""

    mode: str
    measure: str
    side: str
    threshold: float
    negligible: float
    resolution: float
    text: str

    def distance(self, values: np.ndarray) -> np.ndarray:
        """The signed distance of ``values`` to the threshold, positive where the mode is avoided."""
        return self.threshold - values if self.side == "below" else values - self.threshold


RULES = {
    "representation": Rule("representation", "mu", "below", 0.9, 0.05, 1e-3,
                           "mu (norm of the mean unit embedding; 1 = every input on one point) clearly below 0.9"),
    "dimensional": Rule("dimensional", "decades", "below", 3.0, 0.25, 1e-2,
                        "decades (log10 of the largest over the smallest covariance eigenvalue) clearly below 3"),
    "cluster": Rule("cluster", "code_entropy", "above", 0.5, 0.05, 1e-3,
                    "H(p-bar) / log c (entropy of the mean code assignment; 0 = one code) clearly above 0.5"),
    "intracluster": Rule("intracluster", "within_cluster", "above", 0.01, 0.005, 1e-3,
                         "the within-cluster share of the variance (0 = every cluster a point) clearly above 0.01"),
}
"""One rule per mode (module docstring)."""
MODES = tuple(RULES)
QUOTE = ("This bias provably enhances generalization and suffices to avoid known training failure modes, such as "
         "representation, dimensional, cluster, and intracluster collapses.")
WHERE = "Abstract"


def verdict(values: Any, rule: Rule) -> tuple[str, str, stats.PairedGain]:
    """(verdict, reason, interval of the signed distance to the threshold) of ``rule`` on a measure's values over
    seeds (NaNs dropped; "not testable" when none is finite)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "not testable", "no finite value (nothing to measure)", stats.paired_gain([0.0])
    g = stats.paired_gain(rule.distance(v), rule.resolution)
    return (*stats.direction_verdict(g, rule.negligible), g)


def _combine(final: dict[str, tuple[str, str]]) -> str:
    if not final:
        return "not testable"
    if any(v == "fails" for v, _ in final.values()):
        return "fails"
    if all(v == "holds" for v, _ in final.values()):
        return "holds"
    return "inconclusive"


def mode_claims(cells: dict, *, id_prefix: str, setting: str, evidence: str, command: str) -> list[Claim]:
    """One :class:`clop.claims.Claim` per mode from per-seed measures in several cells.

    ``cells``: {cell name: table (a pandas DataFrame or a dict of columns) with one row per seed holding the
    measures the rules read}. A mode holds when it holds in every cell; fails when it fails in some cell after
    Holm's correction over the cells (:func:`clop.stats.holm_fails`); inconclusive otherwise ("not testable" when
    no cell has a finite value). Ids ``<id_prefix>-<mode>``, paper 2410.04959.
    """
    out = []
    for mode, rule in RULES.items():
        judge = stats.raises_judge(rule.negligible)
        results = {name: verdict(rows[rule.measure], rule) for name, rows in cells.items()}
        testable = {k: r for k, r in results.items() if r[0] != "not testable"}
        keep = stats.holm_fails([r[2] for r in testable.values()], [judge] * len(testable))
        final = {}
        for (name, (v, why, _)), k in zip(testable.items(), keep):
            held = v == "fails" and not k
            final[name] = ("inconclusive", why + " (not after Holm's correction)") if held else (v, why)
        below = rule.side == "below"
        sign = f"{rule.threshold:g} - {rule.measure}" if below else f"{rule.measure} - {rule.threshold:g}"
        parts = []
        for name, (v, why) in final.items():
            g = results[name][2]
            raw = np.asarray(cells[name][rule.measure], dtype=float)
            parts.append(f"{name}: {rule.measure} {np.nanmean(raw):.3g} over {g.n} seeds, {sign} = "
                         f"{g.interval_text('', 3)}: {v} ({why}; margin {stats.margin_se(g, judge):.1f} SE)")
        out.append(Claim(
            id=f"{id_prefix}-{mode}", where=WHERE, quote=QUOTE,
            tested=f"{mode} collapse, {setting}: {rule.text}; clop.stats 95 % t-interval over seeds, 2 SE margins, "
                   "Holm over the cells",
            verdict=_combine(final), result="; ".join(parts) if parts else "no finite measure", evidence=evidence,
            command=command, paper="2410.04959"))
    return out
