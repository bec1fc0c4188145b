"""Data of the synthetic 3D experiment of the CLOP paper (arXiv 2403.18699, Section 4, Appendix B).

Section 4: 500 points in R^3 in three classes, each class in its own linear subspace plus Gaussian noise
(mean 0, variance 0.05); 10% of the points are labeled; a KNN classifier (k = 5) is fitted on the labeled
points and scored on the others. The choices the paper leaves open are made here (and printed into every
table5.md by :func:`simulations.ffn.report.choices_text`):

* class sizes 167, 167, 166 (balanced; shuffled);
* class directions u_1, u_2, u_3: uniformly random unit vectors in R^3 (normalised standard Gaussian
  draws), new for every seed, redrawn until every two class lines are at least ``min_angle_deg`` apart
  (|u_i . u_j| <= cos(min_angle_deg)); ``directions="orthogonal"`` gives a random orthonormal triple instead;
* position along the line: ``magnitudes="uniform"``: t = +-m with m ~ U(1, 2) and the sign +-1 with
  probability 1/2, so each class covers both halves of its line (a 1-D linear subspace through the origin,
  matching the sign-flip augmentation) but stays away from the origin; ``magnitudes="normal"``: t ~ N(0, 1);
* noise n ~ N(0, 0.05 * I_3) (variance 0.05 per coordinate, std 0.2236); x = t * u_y + n;
* labeled set: stratified 10% of the points, 17 + 17 + 16 = 50 points (largest-remainder allocation of
  10% of each class), drawn at random within each class; labels of the other 450 are -1 for training.

Two data regimes (:data:`REGIMES`), both reported:

* ``separable`` (make_data's default): 45 degrees and |t| in [1, 2]. With CLOP the paper reaches
  99.89-100% KNN accuracy, so its classes must be (nearly) separable; the default was fixed by that
  criterion alone (how close KNN on the raw inputs comes to 100%: docs/simulations.md), before and
  independently of any comparison of CLOP with the baselines.
* ``overlapping`` (``--magnitudes normal --min-angle 0``): t ~ N(0, 1) and unconstrained random directions,
  arguably the literal reading of Sec. 4 ("Samples within each class are initialized within the same linear
  subspace"). The three lines meet at the origin, so the classes overlap there.

References that bound what any embedding can reach: KNN on the raw inputs (:func:`input_knn_accuracy`)
and, for t ~ N(0, 1), the Bayes-optimal rule that knows the true directions (:func:`bayes_accuracy`).
Seeds: one run seed gives three child seeds (:func:`child_seeds`: data, weights, augmentation), so the
data of a seed are the same for every configuration (paired comparisons)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from clop.util.checks import check_size

__all__ = [
    "N_POINTS", "N_CLASSES", "DIM", "NOISE_VAR", "LABEL_FRACTION", "MIN_ANGLE_DEG", "MAG_LOW", "MAG_HIGH", "KNN_K",
    "REGIMES", "regime_of", "SyntheticData", "make_data", "stack_data", "child_seeds", "generator",
    "knn_accuracy", "input_knn_accuracy", "bayes_accuracy",
]

N_POINTS = 500
N_CLASSES = 3
DIM = 3
NOISE_VAR = 0.05  # Section 4: "Gaussian noise (mean 0, variance 0.05)", for the data and the augmentation
LABEL_FRACTION = 0.10  # Section 4: "the 10% labeled samples"
MIN_ANGLE_DEG = 45.0  # our choice: every two class lines at least 45 degrees apart (see module docstring)
MAG_LOW, MAG_HIGH = 1.0, 2.0  # our choice: |t| ~ U(1, 2) (see module docstring)
KNN_K = 5  # Section 4: "K-Nearest Neighbors (KNN) classifier (with k = 5)"

# The two reported data regimes, as make_data keyword arguments (see the module docstring). "separable" is
# make_data's default; "overlapping" is what `--magnitudes normal --min-angle 0` selects.
REGIMES: dict[str, dict] = {
    "separable": {"directions": "random", "min_angle_deg": MIN_ANGLE_DEG, "magnitudes": "uniform"},
    "overlapping": {"directions": "random", "min_angle_deg": 0.0, "magnitudes": "normal"},
}


def regime_of(directions: str, min_angle_deg: float, magnitudes: str) -> str:
    """Name of the data regime of these make_data settings: "separable", "overlapping" or "custom"."""
    for name, opts in REGIMES.items():
        if (
            directions == opts["directions"]
            and magnitudes == opts["magnitudes"]
            and float(min_angle_deg) == float(opts["min_angle_deg"])
        ):
            return name
    return "custom"


def child_seeds(seed: int) -> tuple[int, int, int]:
    """Three independent 63-bit seeds (data, weights, augmentation) derived from one run seed."""
    ss = np.random.SeedSequence(seed).generate_state(3, dtype=np.uint64)
    return tuple(int(s) & 0x7FFF_FFFF_FFFF_FFFF for s in ss)  # type: ignore[return-value]


def generator(seed: int) -> torch.Generator:
    """A CPU torch.Generator seeded with ``seed`` (the runs draw on the CPU, so any device gives the same data)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


@dataclass
class SyntheticData:
    """One data set or a stack of S of them.

    x: (N, 3) or (S, N, 3) inputs; y: (N,) / (S, N) class labels 0..k-1; labeled: (N,) / (S, N) bool, the
    10% labeled points; directions: (k, 3) / (S, k, 3) unit class directions; t: (N,) / (S, N) magnitudes
    along the class direction; clean: (N, 3) / (S, N, 3) noiseless points t * u_y; seeds: run seeds.
    """

    x: torch.Tensor
    y: torch.Tensor
    labeled: torch.Tensor
    directions: torch.Tensor
    t: torch.Tensor
    clean: torch.Tensor
    seeds: tuple[int, ...]

    @property
    def train_labels(self) -> torch.Tensor:
        """Labels as the CLOP term sees them: y on the labeled points, -1 elsewhere."""
        return torch.where(self.labeled, self.y, torch.full_like(self.y, -1))

    def select(self, rows: slice) -> SyntheticData:
        """The runs ``rows`` of a stack (leading seed axis), e.g. ``data.select(slice(0, 8))``."""
        if self.x.dim() != 3:
            raise ValueError("select needs stacked data (x of shape (S, N, D)); use stack_data first")
        fields = {f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self) if f.name != "seeds"}
        return SyntheticData(**fields, seeds=self.seeds[rows])


def _class_sizes(n: int, k: int) -> list[int]:
    return [n // k + (1 if c < n % k else 0) for c in range(k)]


def _labeled_counts(sizes: list[int], fraction: float) -> list[int]:
    """Largest-remainder allocation of round(fraction * n) labeled points over the classes."""
    total = int(round(fraction * sum(sizes)))
    quotas = [fraction * s for s in sizes]
    counts = [int(math.floor(q)) for q in quotas]
    order = sorted(range(len(sizes)), key=lambda c: (-(quotas[c] - counts[c]), c))
    for c in order[: total - sum(counts)]:
        counts[c] += 1
    return counts


def _draw_directions(k: int, dim: int, kind: str, min_angle_deg: float, g: torch.Generator) -> torch.Tensor:
    """k unit class directions (k, dim), float64: see :func:`make_data`."""
    if kind == "orthogonal":
        # Random orthonormal k-frame: polar factor of a Gaussian draw (as clop.prototypes.orthonormal does).
        u, _, vh = torch.linalg.svd(torch.randn(k, dim, generator=g, dtype=torch.float64), full_matrices=False)
        return u @ vh
    max_cos = math.cos(math.radians(min_angle_deg))
    for _ in range(10_000):
        u = torch.randn(k, dim, generator=g, dtype=torch.float64)
        u = u / u.norm(dim=1, keepdim=True)
        cos = (u @ u.T).abs() - 2.0 * torch.eye(k, dtype=torch.float64)  # diagonal pushed below any bound
        if float(cos.max()) <= max_cos:
            return u
    raise ValueError(
        f"min_angle_deg={min_angle_deg} could not be met by {k} random lines in R^{dim} in 10000 draws; "
        "use a smaller angle"
    )


def _check_data_args(seed, n, k, dim, noise_var, label_fraction, directions, min_angle_deg,
                     magnitudes) -> tuple[int, int, int, int]:
    """The arguments of :func:`make_data` checked (ValueError naming the first bad one); the sizes as ints."""
    seed = check_size("seed", seed, 0)
    n = check_size("n", n, 1)
    k = check_size("k", k, 1)
    dim = check_size("dim", dim, 1)
    if n < k:
        raise ValueError(f"n must be >= k so that every class has a point; got n={n}, k={k}")
    if isinstance(noise_var, bool) or not isinstance(noise_var, numbers.Real) or not noise_var >= 0:
        raise ValueError(f"noise_var must be a real number >= 0; got {noise_var!r}")
    if isinstance(label_fraction, bool) or not isinstance(label_fraction, numbers.Real) or not 0 < label_fraction <= 1:
        raise ValueError(f"label_fraction must be in (0, 1]; got {label_fraction!r}")
    if directions not in ("random", "orthogonal"):
        raise ValueError(f"directions must be 'random' or 'orthogonal'; got {directions!r}")
    if directions == "orthogonal" and k > dim:
        raise ValueError(f"directions='orthogonal' needs k <= dim; got k={k}, dim={dim}")
    if isinstance(min_angle_deg, bool) or not isinstance(min_angle_deg, numbers.Real) or not 0 <= min_angle_deg < 90:
        raise ValueError(f"min_angle_deg must be in [0, 90); got {min_angle_deg!r}")
    if magnitudes not in ("uniform", "normal"):
        raise ValueError(f"magnitudes must be 'uniform' or 'normal'; got {magnitudes!r}")
    return seed, n, k, dim


def make_data(
    seed: int,
    *,
    n: int = N_POINTS,
    k: int = N_CLASSES,
    dim: int = DIM,
    noise_var: float = NOISE_VAR,
    label_fraction: float = LABEL_FRACTION,
    directions: str = "random",
    min_angle_deg: float = MIN_ANGLE_DEG,
    magnitudes: str = "uniform",
) -> SyntheticData:
    """The synthetic data of Section 4 for one seed: x = t * u_y + n, float32 on the CPU.

    Args:
        seed: run seed (non-negative integer); the data use the first child seed of it.
        n: number of points (paper: 500); k: classes (paper: 3); dim: ambient dimension (paper: 3).
        noise_var: variance of the isotropic Gaussian noise per coordinate (paper: 0.05).
        label_fraction: share of labeled points, stratified by class (paper: 0.1).
        directions: "random": uniform random unit vectors, redrawn until every two class lines are at least
            ``min_angle_deg`` apart (acute angle between the lines, |cos| <= cos(min_angle_deg); 0 accepts
            any draw); "orthogonal": a random orthonormal k-frame.
        min_angle_deg: in [0, 90); used by directions="random" only.
        magnitudes: "uniform": t = +-m, m ~ U(MAG_LOW, MAG_HIGH), sign +-1 with probability 1/2 (the class
            is the line minus a neighbourhood of the origin); "normal": t ~ N(0, 1) (the whole line, classes
            overlap near the origin).

    Returns x: (n, dim), y: (n,), labeled: (n,), directions: (k, dim), t: (n,), clean: (n, dim).
    """
    seed, n, k, dim = _check_data_args(seed, n, k, dim, noise_var, label_fraction, directions, min_angle_deg,
                                       magnitudes)
    g = generator(child_seeds(seed)[0])
    f64 = torch.float64
    u = _draw_directions(k, dim, directions, float(min_angle_deg), g)
    sizes = _class_sizes(n, k)
    y = torch.cat([torch.full((s,), c, dtype=torch.long) for c, s in enumerate(sizes)])
    y = y[torch.randperm(n, generator=g)]
    if magnitudes == "uniform":
        m = MAG_LOW + (MAG_HIGH - MAG_LOW) * torch.rand(n, generator=g, dtype=f64)
        t = m * (1.0 - 2.0 * torch.randint(0, 2, (n,), generator=g).to(f64))
    else:
        t = torch.randn(n, generator=g, dtype=f64)
    clean = t[:, None] * u[y]
    x = clean + math.sqrt(noise_var) * torch.randn(n, dim, generator=g, dtype=f64)
    labeled = torch.zeros(n, dtype=torch.bool)
    for c, cnt in enumerate(_labeled_counts(sizes, float(label_fraction))):
        idx = torch.nonzero(y == c).flatten()
        labeled[idx[torch.randperm(idx.numel(), generator=g)[:cnt]]] = True
    return SyntheticData(
        x=x.float(), y=y, labeled=labeled, directions=u.float(), t=t.float(), clean=clean.float(), seeds=(seed,)
    )


def stack_data(items: list[SyntheticData]) -> SyntheticData:
    """Stack S single-seed data sets (same n, k, dim) into one with a leading seed axis."""
    if not items:
        raise ValueError("items must be a non-empty list of SyntheticData; got an empty list")
    return SyntheticData(
        x=torch.stack([d.x for d in items]),
        y=torch.stack([d.y for d in items]),
        labeled=torch.stack([d.labeled for d in items]),
        directions=torch.stack([d.directions for d in items]),
        t=torch.stack([d.t for d in items]),
        clean=torch.stack([d.clean for d in items]),
        seeds=tuple(s for d in items for s in d.seeds),
    )


def knn_accuracy(emb: np.ndarray, y: np.ndarray, labeled: np.ndarray, k: int = KNN_K) -> float:
    """KNeighborsClassifier(n_neighbors=k) fitted on the labeled rows, accuracy on the others.

    emb: (N, D); y: (N,); labeled: (N,) bool.
    """
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=k)
    clf.fit(emb[labeled], y[labeled])
    return float(clf.score(emb[~labeled], y[~labeled]))


def input_knn_accuracy(data: SyntheticData) -> list[float]:
    """Reference: KNN accuracy on the raw inputs x (no network), per seed."""
    return [
        knn_accuracy(data.x[i].double().numpy(), data.y[i].numpy(), data.labeled[i].numpy())
        for i in range(len(data.seeds))
    ]


def bayes_accuracy(data: SyntheticData, noise_var: float = NOISE_VAR) -> list[float]:
    """Reference for magnitudes="normal": accuracy of the Bayes-optimal rule on the unlabeled points, per seed.

    With t ~ N(0, 1) and noise N(0, noise_var I), x given class c is exactly Gaussian, N(0, Sigma_c) with
    Sigma_c = u_c u_c^T + noise_var I, so the rule argmax_c [log(n_c / n) + log N(x; 0, Sigma_c)], which knows
    the true directions u_c, is the best any classifier can do on such data (up to sampling). data: stacked,
    x (S, N, D), made with magnitudes="normal" (not checked: the data do not record how t was drawn).
    """
    if data.x.dim() != 3:
        raise ValueError(f"data must be stacked (x of shape (S, N, D)); got x of shape {tuple(data.x.shape)}")
    if isinstance(noise_var, bool) or not isinstance(noise_var, numbers.Real) or not noise_var > 0:
        raise ValueError(f"noise_var must be a real number > 0; got {noise_var!r}")
    out = []
    for i in range(len(data.seeds)):
        x, u, y = data.x[i].double(), data.directions[i].double(), data.y[i]
        k, d = u.shape
        scores = []
        for c in range(k):
            cov = torch.outer(u[c], u[c]) + noise_var * torch.eye(d, dtype=torch.float64)
            dist = torch.distributions.MultivariateNormal(torch.zeros(d, dtype=torch.float64), covariance_matrix=cov)
            scores.append(dist.log_prob(x) + math.log(float((y == c).sum()) / y.numel()))
        pred = torch.stack(scores, dim=1).argmax(dim=1)
        test = ~data.labeled[i]
        out.append(float((pred[test] == y[test]).double().mean()))
    return out

