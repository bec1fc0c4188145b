"""Loop references and test data for the tests of clop.losses (arXiv 2403.18699 and the losses it compares).

The references below are deliberately naive: Python floats, explicit loops over samples and
dimensions, ``math.exp``/``math.log``; they share no code with clop.losses.
"""

from __future__ import annotations

import math

import torch

SEEDS = (0, 1, 2)


def randn64(seed: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g, dtype=torch.float64)


def two_views(seed: int, n: int = 5, d: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Two correlated views, rows of varied norm (the losses must not care about the norm)."""
    z1 = randn64(seed, n, d, scale=2.0)
    z2 = z1 + randn64(seed + 100, n, d, scale=0.7)
    return z1, z2


def mixed_labels(seed: int, n: int, k: int = 3) -> torch.Tensor:
    """Random labels in {-1, ..., k-1}; forced to contain a repeated class and an unlabeled sample."""
    g = torch.Generator().manual_seed(seed + 7)
    y = torch.randint(-1, k, (n,), generator=g)
    y[0], y[1], y[2] = 0, 0, -1
    return y


# ------------------------------------------------------------------------------------------
# Loop references
# ------------------------------------------------------------------------------------------


def as_rows(z: torch.Tensor) -> list[list[float]]:
    return [[float(v) for v in row] for row in z]


def unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def views(z1, z2) -> list[list[float]]:
    return [unit(r) for r in as_rows(z1)] + [unit(r) for r in as_rows(z2)]


def ref_info_nce_sum(z1, z2, t):
    """Eq. (1) as printed: a SUM over the 2N anchors (loop, no division)."""
    u = views(z1, z2)
    m = len(u)
    total = 0.0
    for i in range(m):
        p = (i + m // 2) % m
        denom = sum(math.exp(dot(u[i], u[a]) / t) for a in range(m) if a != i)
        total += -math.log(math.exp(dot(u[i], u[p]) / t) / denom)
    return total


def ref_info_nce(z1, z2, t):
    """Mean over the 2N anchors of the loop-computed Eq. (1) terms."""
    return ref_info_nce_sum(z1, z2, t) / (2 * len(as_rows(z1)))


def ref_dcl(z1, z2, t):
    u = views(z1, z2)
    m = len(u)
    total = 0.0
    for i in range(m):
        p = (i + m // 2) % m
        denom = sum(math.exp(dot(u[i], u[a]) / t) for a in range(m) if a not in (i, p))
        total += -dot(u[i], u[p]) / t + math.log(denom)
    return total / m


def ref_supcon(z1, z2, labels, t):
    u = views(z1, z2)
    y = [int(v) for v in labels] * 2
    m = len(u)
    total = 0.0
    for i in range(m):
        if y[i] >= 0:
            pos = [p for p in range(m) if p != i and y[p] == y[i]]
        else:
            pos = [(i + m // 2) % m]
        denom = sum(math.exp(dot(u[i], u[a]) / t) for a in range(m) if a != i)
        total += -sum(math.log(math.exp(dot(u[i], u[p]) / t) / denom) for p in pos) / len(pos)
    return total / m


def _standardised_columns(z, eps, unbiased):
    rows = as_rows(z)
    n, d = len(rows), len(rows[0])
    out = [[0.0] * d for _ in range(n)]
    for j in range(d):
        col = [rows[i][j] for i in range(n)]
        mean = sum(col) / n
        var = sum((x - mean) ** 2 for x in col) / (n - 1 if unbiased else n)
        for i in range(n):
            out[i][j] = (col[i] - mean) / math.sqrt(var + eps)
    return out


def ref_barlow(z1, z2, lam, eps, unbiased):
    a = _standardised_columns(z1, eps, unbiased)
    b = _standardised_columns(z2, eps, unbiased)
    n, d = len(a), len(a[0])
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[s][i] * b[s][j] for s in range(n)) / n
            loss += (1.0 - c_ij) ** 2 if i == j else lam * c_ij**2
    return loss


def ref_vicreg(z1, z2, lam, mu, nu, eps, gamma=1.0):
    a, b = as_rows(z1), as_rows(z2)
    n, d = len(a), len(a[0])
    inv = sum((a[i][j] - b[i][j]) ** 2 for i in range(n) for j in range(d)) / (n * d)

    def var_cov(rows):
        means = [sum(rows[i][j] for i in range(n)) / n for j in range(d)]
        cov = [
            [sum((rows[s][i] - means[i]) * (rows[s][j] - means[j]) for s in range(n)) / (n - 1) for j in range(d)]
            for i in range(d)
        ]
        v = sum(max(0.0, gamma - math.sqrt(cov[j][j] + eps)) for j in range(d)) / d
        c = sum(cov[i][j] ** 2 for i in range(d) for j in range(d) if i != j) / d
        return v, c

    va, ca = var_cov(a)
    vb, cb = var_cov(b)
    return lam * inv + mu * (va + vb) + nu * (ca + cb)


def ref_clop(z, labels, protos, similarity, lam, reduction):
    rows, cs = as_rows(z), as_rows(protos)
    total, count = 0.0, 0
    for row, y in zip(rows, [int(v) for v in labels]):
        if y < 0:
            continue
        count += 1
        c = cs[y]
        if similarity == "cosine":
            total += 1.0 - dot(row, c) / math.sqrt(dot(row, row) * dot(c, c))
        else:
            zh = unit(row)
            diffs = [x - w for x, w in zip(zh, c)]
            if similarity == "euclidean":
                total += math.sqrt(sum(x * x for x in diffs))
            else:
                total += sum(abs(x) for x in diffs)
    if reduction == "mean" and count:
        total /= count
    if reduction == "batch":
        total /= len(rows)
    return lam * total


def ref_l_class(x):
    rows = as_rows(x)
    return sum(dot(rows[i], rows[j]) for i in range(len(rows)) for j in range(len(rows)) if i != j)
