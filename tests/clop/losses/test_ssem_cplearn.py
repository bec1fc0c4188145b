"""Tests of the SSEM and CPLearn losses of clop.losses and of CPLearn's projector.

Each loss is checked against a reference written here with explicit Python loops over anchors, pairs and
codes on float64 scalar tensors (so that autograd differentiates the reference too); the references share
no code with clop.losses. Values and gradients must agree to the rounding error of float64 (see :func:`_tol`).
"""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

import clop.losses as L

EPS64 = torch.finfo(torch.float64).eps
SEEDS = (0, 1, 2)
# A batch with every case the losses distinguish: a class with 3 samples, a class with 2, a class with a
# single sample (no supervised partner of another sample), and two unlabeled samples.
LABELS = torch.tensor([0, 0, 1, 2, -1, 1, 0, -1])


def _tol(terms: int, scale: float) -> float:
    """Relative tolerance for comparing two float64 computations of a reduction over ``terms`` values.

    Each summand carries a relative rounding error of a few eps, amplified by the largest exponent
    ``scale`` it went through (exp(x) computed from an x with error eps |x| has relative error eps |x|);
    a sum of ``terms`` such values adds at most ``terms`` of them. Both sides err, hence the factor 4.
    """
    return 4 * EPS64 * terms * (1.0 + scale)


def _close(got: torch.Tensor, want: torch.Tensor, tol: float) -> None:
    """|got - want| <= tol * max|want| elementwise (a relative bound on the whole tensor)."""
    scale = float(want.abs().max())
    err = float((got - want).abs().max())
    assert err <= tol * max(scale, EPS64), f"error {err:.3g} exceeds {tol:.3g} x {scale:.3g}"


def _views(seed: int, n: int = 8, d: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Two correlated float64 views whose rows have varied norms, with gradients enabled."""
    g = torch.Generator().manual_seed(seed)
    z1 = 2.0 * torch.randn(n, d, generator=g, dtype=torch.float64)
    z2 = z1 + 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return z1.requires_grad_(), z2.requires_grad_()


def _value_and_grads(fn, *tensors) -> tuple[torch.Tensor, list[torch.Tensor]]:
    value = fn(*tensors)
    grads = torch.autograd.grad(value, tensors)
    return value.detach(), [g.detach() for g in grads]


# ------------------------------------------------------------------------------------------
# Loop references
# ------------------------------------------------------------------------------------------


def _unit_list(z1: torch.Tensor, z2: torch.Tensor) -> list[torch.Tensor]:
    rows = [z1[i] for i in range(z1.shape[0])] + [z2[i] for i in range(z2.shape[0])]
    out = []
    for r in rows:
        norm = torch.sqrt(sum(r[j] * r[j] for j in range(r.shape[0])))
        out.append(r / norm)
    return out


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return sum(a[j] * b[j] for j in range(a.shape[0]))


def ref_ssem_pairs(z1, z2, labels, alpha, t):
    """The CIFAR code's convention: column-wise softmax with the self term, global means over pairs."""
    u = _unit_list(z1, z2)
    m, n = len(u), len(u) // 2
    y = [int(v) for v in labels] * 2
    s = [[_dot(u[a], u[b]) / t for b in range(m)] for a in range(m)]
    log_denominator = [torch.log(sum(torch.exp(s[c][b]) for c in range(m))) for b in range(m)]
    self_terms, sup_terms = [], []
    for a in range(m):
        for b in range(m):
            log_p = s[a][b] - log_denominator[b]
            if a % n == b % n:
                self_terms.append(log_p)
            elif y[a] == y[b] and y[a] >= 0:
                sup_terms.append(log_p)
    l_self = -sum(self_terms) / len(self_terms)
    l_sup = -sum(sup_terms) / len(sup_terms) if sup_terms else torch.zeros((), dtype=z1.dtype)
    return (1 - alpha) * l_sup + alpha * l_self


def ref_ssem_anchors(z1, z2, labels, alpha, t):
    """The ImageNet code's convention: SupCon-style, self out of denominators and positives, per-anchor means."""
    u = _unit_list(z1, z2)
    m, n = len(u), len(u) // 2
    y = [int(v) for v in labels] * 2
    self_terms, sup_terms = [], []
    for i in range(m):
        s = [_dot(u[i], u[a]) / t for a in range(m)]
        log_denominator = torch.log(sum(torch.exp(s[a]) for a in range(m) if a != i))
        self_terms.append(log_denominator - s[(i + n) % m])
        if y[i] >= 0:
            positives = [a for a in range(m) if a != i and y[a] == y[i]]
            sup_terms.append(log_denominator - sum(s[a] for a in positives) / len(positives))
    l_self = sum(self_terms) / len(self_terms)
    l_sup = sum(sup_terms) / len(sup_terms) if sup_terms else torch.zeros((), dtype=z1.dtype)
    return (1 - alpha) * l_sup + alpha * l_self


REF_SSEM = {"pairs": ref_ssem_pairs, "anchors": ref_ssem_anchors}


def ref_cplearn(l1, l2, beta):
    """Both halves of the CPLearn loss by loops over samples and codes."""
    n, c = l1.shape

    def softmax_rows(x):
        rows = []
        for i in range(n):
            top = max(float(x[i, j].detach()) for j in range(c))  # a constant shift: no gradient needed
            e = [torch.exp(x[i, j] - top) for j in range(c)]
            total = sum(e)
            rows.append([v / total for v in e])
        return rows

    def ce(target, q):
        return -sum(target[i][j] * torch.log(q[i][j]) for i in range(n) for j in range(c)) / n

    def kl_uniform(p):
        means = [sum(p[i][j] for i in range(n)) / n for j in range(c)]
        return sum(pj * torch.log(c * pj) for pj in means)

    p1, p2 = softmax_rows(l1), softmax_rows(l2)
    return 0.5 * (beta * ce(p2, p1) + kl_uniform(p2)) + 0.5 * (beta * ce(p1, p2) + kl_uniform(p1))


# ------------------------------------------------------------------------------------------
# SSEM against its loop references
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("convention", ["pairs", "anchors"])
@pytest.mark.parametrize("t", [0.1, 0.5])
def test_ssem_value_and_gradient_match_loops(seed, alpha, convention, t):
    z1, z2 = _views(seed)
    got, grads = _value_and_grads(lambda a, b: L.ssem(a, b, LABELS, alpha, t, convention), z1, z2)
    want, ref_grads = _value_and_grads(lambda a, b: REF_SSEM[convention](a, b, LABELS, alpha, t), z1, z2)
    tol = _tol((2 * z1.shape[0]) ** 2, 1 / t)
    _close(got, want, tol)
    for g, r in zip(grads, ref_grads):
        _close(g, r, tol)


@pytest.mark.parametrize("convention", ["pairs", "anchors"])
def test_ssem_terms_are_the_two_parts(convention):
    z1, z2 = _views(3)
    sup, self_ = L.ssem_terms(z1, z2, LABELS, 0.2, convention)
    tol = _tol((2 * z1.shape[0]) ** 2, 1 / 0.2)
    _close(sup.detach(), REF_SSEM[convention](z1, z2, LABELS, 0.0, 0.2).detach(), tol)
    _close(self_.detach(), REF_SSEM[convention](z1, z2, LABELS, 1.0, 0.2).detach(), tol)
    mixed = L.ssem(z1, z2, LABELS, 0.4, 0.2, convention)
    _close(mixed.detach(), (0.6 * sup + 0.4 * self_).detach(), 4 * EPS64)


ALL_UNLABELED = torch.full((6,), -1)
ALL_SINGLETONS = torch.tensor([0, 1, 2, 3, -1, 4])


@pytest.mark.parametrize(
    ("convention", "labels"),
    [("pairs", ALL_UNLABELED), ("pairs", ALL_SINGLETONS), ("anchors", ALL_UNLABELED)],
    ids=["pairs-all-unlabeled", "pairs-all-singletons", "anchors-all-unlabeled"],
)
def test_ssem_without_supervised_pairs_has_zero_supervised_part(convention, labels):
    """No supervised pair: L_sup is exactly 0 with a zero gradient, so alpha = 0 gives 0 (never NaN).

    (In "anchors" a labeled anchor always has its own other view as positive, so only a batch without
    labeled samples has no supervised pair there; the singleton batch is covered by the loop tests.)
    """
    z1, z2 = _views(4, n=6)
    sup, self_ = L.ssem_terms(z1, z2, labels, 0.1, convention)
    assert float(sup.detach()) == 0.0
    value = L.ssem(z1, z2, labels, alpha=0.0, convention=convention)
    grads = torch.autograd.grad(value, (z1, z2))
    assert float(value.detach()) == 0.0 and all(bool((g == 0).all()) for g in grads)
    _close(L.ssem(z1, z2, labels, 0.3, 0.1, convention).detach(), 0.3 * self_.detach(), 4 * EPS64)


def test_ssem_anchors_reduces_to_info_nce_and_supcon():
    """alpha = 1 is NT-Xent; alpha = 0 on a fully labeled batch is SupCon's L_out."""
    z1, z2 = _views(5, n=6)
    y = torch.tensor([0, 1, 0, 2, 1, 1])
    tol = _tol(12**2, 1 / 0.1)
    _close(L.ssem(z1, z2, y, 1.0, 0.1, "anchors").detach(), L.info_nce(z1, z2, 0.1).detach(), tol)
    _close(L.ssem(z1, z2, y, 0.0, 0.1, "anchors").detach(), L.supcon(z1, z2, y, 0.1).detach(), tol)


@pytest.mark.parametrize("convention", ["pairs", "anchors"])
def test_ssem_ignores_row_norms_and_module_matches_function(convention):
    z1, z2 = _views(6)
    base = L.ssem(z1, z2, LABELS, 0.3, 0.2, convention).detach()
    scaled = L.ssem(3.0 * z1, 0.5 * z2, LABELS, 0.3, 0.2, convention).detach()
    _close(scaled, base, _tol(16**2, 1 / 0.2))
    module = L.make_loss("SSEM", alpha=0.3, temperature=0.2, convention=convention)
    assert isinstance(module, L.SSEMLoss)
    assert float(module(z1, z2, LABELS).detach()) == float(base)


def test_ssem_defaults_are_the_authors_cifar_command():
    module = L.SSEMLoss()
    assert (module.alpha, module.temperature, module.convention) == (0.5, 0.1, "pairs")
    z1, z2 = _views(7)
    assert float(L.ssem(z1, z2, LABELS).detach()) == float(L.ssem(z1, z2, LABELS, 0.5, 0.1, "pairs").detach())


# ------------------------------------------------------------------------------------------
# CPLearn against its loop reference
# ------------------------------------------------------------------------------------------


def _logits(seed: int, n: int = 6, c: int = 5, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    l1 = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    l2 = l1 + scale * 0.5 * torch.randn(n, c, generator=g, dtype=torch.float64)
    return l1.requires_grad_(), l2.requires_grad_()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("beta", [0.0, 0.05, 1.0])
def test_cplearn_value_and_gradient_match_loop(seed, beta):
    l1, l2 = _logits(seed)
    got, grads = _value_and_grads(lambda a, b: L.cplearn(a, b, beta), l1, l2)
    want, ref_grads = _value_and_grads(lambda a, b: ref_cplearn(a, b, beta), l1, l2)
    spread = max(float((x.detach().amax(1) - x.detach().amin(1)).max()) for x in (l1, l2))  # largest logit gap
    tol = _tol(l1.numel(), spread)
    _close(got, want, tol)
    for g, r in zip(grads, ref_grads):
        _close(g, r, tol)


def test_cplearn_minimum_shape():
    """Uniform code use and identical one-code views: the KL terms vanish and only the CE (entropy) is left."""
    c = 4
    eye = 40.0 * torch.eye(c, dtype=torch.float64)  # sample i on code i, nearly one-hot
    value = L.cplearn(eye, eye, beta=1.0)
    p = torch.softmax(eye, dim=1)
    entropy = float(-(p * p.log()).sum(1).mean())
    assert float(value) == pytest.approx(entropy, rel=1e-12, abs=1e-15)
    assert float(L.cplearn(eye, eye, beta=0.0)) == pytest.approx(0.0, abs=1e-15)


def test_cplearn_stays_finite_where_probabilities_underflow():
    """Logits far apart in float32: some p_ij underflow to 0; the log-domain terms stay finite with finite gradients."""
    l1 = torch.tensor([[300.0, 0.0, -300.0], [0.0, 300.0, -300.0]], requires_grad=True)
    l2 = torch.tensor([[300.0, -300.0, 0.0], [-300.0, 300.0, 0.0]], requires_grad=True)
    value = L.cplearn(l1, l2)
    grads = torch.autograd.grad(value, (l1, l2))
    assert math.isfinite(float(value.detach())) and all(bool(torch.isfinite(g).all()) for g in grads)


def test_cplearn_module_and_registry():
    l1, l2 = _logits(8)
    module = L.make_loss("cplearn", beta=0.5)
    assert isinstance(module, L.CPLearnLoss) and module.beta == 0.5
    assert float(module(l1, l2).detach()) == float(L.cplearn(l1, l2, 0.5).detach())
    assert L.CPLearnLoss().beta == 1.0
    assert {"ssem", "cplearn"} <= set(L.LOSSES)


# ------------------------------------------------------------------------------------------
# CPLearn's temperature and projector
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("f", "n", "c", "eps"), [(2048, 64, 16384, 1e-8), (8, 1, 2, 0.1), (512, 256, 1000, 1e-5)])
def test_cplearn_temperature_formula(f, n, c, eps):
    """tau = f / (sqrt(n) log((1 - eps (c - 1)) / eps)), against a 50-digit evaluation of the same formula."""
    with mpmath.workdps(50):
        e = mpmath.mpf(eps)
        want = mpmath.mpf(f) / (mpmath.sqrt(n) * mpmath.log((1 - e * (c - 1)) / e))
    assert L.cplearn_temperature(f, n, c, eps) == pytest.approx(float(want), rel=8 * EPS64)


@pytest.mark.parametrize(("c", "eps"), [(2, 0.1), (16384, 1e-8), (10, 1e-3)])
def test_cplearn_temperature_meaning(c, eps):
    """At n = 1 a logit gap of f / tau on one code puts probability eps on each of the other c - 1 codes."""
    f = 64
    tau = L.cplearn_temperature(f, 1, c, eps)
    logits = torch.zeros(c, dtype=torch.float64)
    logits[0] = f / tau
    p = torch.softmax(logits, dim=0)
    assert float(p[1:].max()) == pytest.approx(eps, rel=1e-12)
    assert float(p[0]) == pytest.approx(1 - (c - 1) * eps, rel=1e-12)
    assert L.cplearn_temperature(f, 49, c, eps) == pytest.approx(tau / 7, rel=4 * EPS64)


def test_projector_codes_are_a_fixed_seeded_buffer():
    a = L.CPLearnProjector(6, 16, 32, n=4, seed=3)
    b = L.CPLearnProjector(6, 16, 32, n=4, seed=3)
    other = L.CPLearnProjector(6, 16, 32, n=4, seed=4)
    assert a.codes.shape == (16, 32) and a.codes.dtype == torch.float32
    assert set(a.codes.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(a.codes, b.codes) and not torch.equal(a.codes, other.codes)
    assert "codes" in a.state_dict() and not a.codes.requires_grad
    assert all(p is not a.codes for p in a.parameters())
    assert {name for name, _ in a.named_parameters()} == {"linear.weight", "linear.bias", "bn.weight", "bn.bias"}
    other.load_state_dict(a.state_dict())
    assert torch.equal(other.codes, a.codes)
    assert a.to(torch.float64).codes.dtype == torch.float64
    assert a.to("meta").codes.device.type == "meta"
    if torch.cuda.is_available():  # pragma: no cover - CPU-only test machines
        assert b.to("cuda").codes.device.type == "cuda"


def test_projector_forward_is_tanh_bn_linear_times_codes_over_tau():
    torch.manual_seed(0)
    proj = L.CPLearnProjector(6, 16, 32, n=5, seed=1).double()
    x = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    h = proj.embed(x)
    assert h.shape == (5, 16) and bool((h.abs() < 1).all())
    lin = x @ proj.linear.weight.T + proj.linear.bias
    mean, var = lin.mean(0), lin.var(0, unbiased=False)
    want_h = torch.tanh((lin - mean) / torch.sqrt(var + proj.bn.eps) * proj.bn.weight + proj.bn.bias)
    _close(h.detach(), want_h.detach(), 64 * EPS64)
    tau = L.cplearn_temperature(16, 5, 32)
    assert proj.tau == tau
    _close(proj(x).detach(), (want_h @ proj.codes / tau).detach(), 64 * 16 * EPS64)
    # n=None: tau from each forward batch's size, as the authors' code does
    free = L.CPLearnProjector(6, 16, 32, n=None, seed=1).double()
    free.load_state_dict(proj.state_dict())
    assert free.tau is None
    _close(free(x).detach(), proj(x).detach(), 0.0)
    x8 = torch.randn(8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    _close(free(x8).detach(), (free.embed(x8) @ free.codes / L.cplearn_temperature(16, 8, 32)).detach(), 0.0)


def test_projector_codes_do_not_train():
    proj = L.CPLearnProjector(6, 8, 16, n=4, seed=0)
    before = proj.codes.clone()
    opt = torch.optim.SGD(proj.parameters(), lr=0.5)
    x1, x2 = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        opt.zero_grad()
        L.cplearn(proj(x1), proj(x2)).backward()
        opt.step()
    assert torch.equal(proj.codes, before)


# ------------------------------------------------------------------------------------------
# Bad arguments: one ValueError naming the argument
# ------------------------------------------------------------------------------------------


def test_ssem_bad_arguments():
    z1, z2 = _views(0, n=4)
    y = torch.tensor([0, 0, 1, -1])
    for alpha in (-0.1, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match=r"^alpha must be a real number in \[0, 1\]; got"):
            L.ssem(z1, z2, y, alpha=alpha)
        with pytest.raises(ValueError, match=r"^alpha must be"):
            L.SSEMLoss(alpha=alpha)
    for t in (0.0, -0.5, float("inf")):
        with pytest.raises(ValueError, match=r"^temperature must be a finite real number > 0"):
            L.ssem(z1, z2, y, temperature=t)
        with pytest.raises(ValueError, match=r"^temperature must be"):
            L.SSEMLoss(temperature=t)
    with pytest.raises(
        ValueError, match=r"^convention='supcon' is not supported; expected one of \['pairs', 'anchors'\]"
    ):
        L.ssem(z1, z2, y, convention="supcon")
    with pytest.raises(ValueError, match=r"^convention="):
        L.SSEMLoss(convention=3)
    with pytest.raises(ValueError, match=r"^labels must have shape \(4,\)"):
        L.ssem(z1, z2, y[:3])
    with pytest.raises(ValueError, match=r"^labels must have an integer dtype"):
        L.ssem(z1, z2, y.double())
    with pytest.raises(ValueError, match=r"^labels must be >= -1"):
        L.ssem(z1, z2, torch.tensor([0, -2, 1, 1]))
    with pytest.raises(ValueError, match=r"^labels=None: SSEMLoss needs labels"):
        L.SSEMLoss()(z1, z2)
    with pytest.raises(ValueError, match=r"^z1 and z2 must have the same shape"):
        L.ssem(z1, z2[:, :3], y)
    with pytest.raises(ValueError, match=r"N=1"):
        L.ssem(z1[:1], z2[:1], y[:1])


def test_cplearn_bad_arguments():
    l1, l2 = _logits(0)
    with pytest.raises(
        ValueError, match=r"^logits1 and logits2 must have the same shape \(n, c\); got \(6, 5\) and \(6, 4\)"
    ):
        L.cplearn(l1, l2[:, :4])
    with pytest.raises(ValueError, match=r"^logits1 and logits2 must have the same shape"):
        L.cplearn(l1, l2[:3])
    with pytest.raises(ValueError, match=r"^logits1 and logits2 must share dtype"):
        L.cplearn(l1, l2.float())
    with pytest.raises(ValueError, match=r"^logits2 must have c >= 2 columns"):
        L.cplearn(l1, l2[:, :1])
    with pytest.raises(ValueError, match=r"^logits1 must have c >= 2 columns"):
        L.cplearn(l1[:, :1], l2[:, :1])
    with pytest.raises(ValueError, match=r"^logits1 must be a floating-point tensor of shape \(n, c\)"):
        L.cplearn(l1[0], l2[0])
    with pytest.raises(ValueError, match=r"^logits2 must be a torch.Tensor"):
        L.cplearn(l1, [[0.0, 1.0]])
    with pytest.raises(ValueError, match=r"^logits1 is an empty batch"):
        L.cplearn(l1[:0], l2[:0])
    for beta in (-1.0, float("nan")):
        with pytest.raises(ValueError, match=r"^beta must be a finite real number >= 0"):
            L.cplearn(l1, l2, beta)
        with pytest.raises(ValueError, match=r"^beta must be"):
            L.CPLearnLoss(beta)
    with pytest.raises(ValueError, match=r"^c must be an integer >= 2; got 1"):
        L.cplearn_temperature(16, 4, 1)
    with pytest.raises(ValueError, match=r"^f must be an integer >= 1; got 0"):
        L.cplearn_temperature(0, 4, 8)
    with pytest.raises(ValueError, match=r"^n must be an integer >= 1; got 0"):
        L.cplearn_temperature(16, 0, 8)
    for eps in (0.0, -1e-8, 0.125, 0.5, float("nan")):
        with pytest.raises(ValueError, match=r"^eps must be a real number in \(0, 1/c\)"):
            L.cplearn_temperature(16, 4, 8, eps)
    with pytest.raises(ValueError, match=r"^c must be an integer >= 2; got 1"):
        L.CPLearnProjector(4, 8, 1, 4)
    with pytest.raises(ValueError, match=r"^f must be an integer >= 1; got 0"):
        L.CPLearnProjector(4, 0, 8, 4)
    with pytest.raises(ValueError, match=r"^in_features must be an integer >= 1; got 0"):
        L.CPLearnProjector(0, 8, 8, 4)
    with pytest.raises(ValueError, match=r"^n must be an integer >= 1; got 0"):
        L.CPLearnProjector(4, 8, 8, 0)
    with pytest.raises(ValueError, match=r"^eps must be a real number in \(0, 1/c\)"):
        L.CPLearnProjector(4, 8, 8, 4, eps=0.2)
    with pytest.raises(ValueError, match=r"^seed must be an integer; got 0.5"):
        L.CPLearnProjector(4, 8, 8, 4, seed=0.5)
    with pytest.raises(ValueError, match=r"^name='cp' is not a known loss"):
        L.make_loss("cp")
