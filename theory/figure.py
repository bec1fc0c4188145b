"""The Theorem 1 figure of ``python -m theory --figure PATH``: the learning-rate bounds against k.

Draws the corrected bound (eps = 0), the exact critical rate, the paper's printed closed form and printed
ratio for k = 3..100, with Figure 3's learning rates 2.0 and 2.1 as horizontal lines. The data go to
``theorem1_bound.csv`` beside the figure; both are drawn from the same data in memory and renamed into
place together (:func:`clop.util.io.staged_outputs`), so an interrupted run leaves the previous pair as it
was. :func:`plot_from_csv` redraws the figure from the CSV alone.
"""

from __future__ import annotations

import csv
import os

import sympy as sp

__all__ = ["FIGURE_CSV", "figure_format", "figure_data", "write_figure", "plot_from_csv"]

FIGURE_CSV = "theorem1_bound.csv"


def figure_format(path: str, name: str = "figure path") -> str:
    """The matplotlib format of the figure path ``path`` (its suffix), or ``ValueError`` naming ``name`` and the path."""
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = os.path.splitext(str(path))[1].lstrip(".").lower()
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(f"{name} {str(path)!r} must end in one of {sorted('.' + f for f in supported)}; got "
                         f"{'no suffix' if not fmt else repr('.' + fmt)}")
    return fmt


def figure_data(k_max: int = 100) -> dict:
    """Columns of the Theorem 1 figure for k = 3..k_max: k, lr_bound_eps0, critical_lr, paper_closed_form, paper_ratio."""
    import numpy as np

    from theory import theorem1 as t1

    ks = np.arange(3, k_max + 1)
    ratio_fn = sp.lambdify(t1.k, t1.paper_ratio_expr(), "numpy")
    return {
        "k": ks,
        "lr_bound_eps0": t1.lr_bound(ks),
        "critical_lr": t1.critical_lr(ks),
        "paper_closed_form": t1.paper_closed_form(ks),
        "paper_ratio": ratio_fn(ks.astype(float)),
    }


def write_figure(path: str, k_max: int = 100) -> str:
    """Bound (eps = 0), printed closed form, printed ratio and critical rate for k = 3..k_max; Figure 3's 2.0
    and 2.1 as horizontal lines. Writes the figure to ``path`` and its data to theorem1_bound.csv beside it,
    both drawn from the same data in memory and renamed into place together (an interrupted call leaves the
    previous pair untouched); returns the CSV path. :func:`plot_from_csv` redraws the figure from the CSV."""
    from clop.util.io import staged_outputs

    fmt = figure_format(path)
    data = figure_data(k_max)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with staged_outputs(folder) as stage:
        _write_csv(data, stage(FIGURE_CSV))
        _draw(data, stage(os.path.basename(path)), fmt)
    return os.path.join(folder, FIGURE_CSV)


def _write_csv(data: dict, csv_path) -> None:
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(data))
        for row in zip(*data.values()):
            w.writerow([int(row[0])] + [f"{float(v):.12g}" for v in row[1:]])


def plot_from_csv(csv_path: str, png_path: str) -> None:
    """Redraw the Theorem 1 figure at ``png_path`` (atomically) from a theorem1_bound.csv written by :func:`write_figure`."""
    import numpy as np

    from clop.util.io import atomic_path

    fmt = figure_format(png_path)
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    data = {key: np.array([float(r[key]) for r in rows]) for key in rows[0]}
    with atomic_path(png_path) as tmp:
        _draw(data, tmp, fmt)


def _draw(col: dict, png_path, fmt: str = "png") -> None:
    """Draw the figure from the columns of :func:`figure_data` into ``png_path`` in format ``fmt``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from theory.paper_data import PAPER_QUOTES

    lrs = list(PAPER_QUOTES["figure3_learning_rates"]["value"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, (lo, hi, ylim, logy) in zip(axes, [(3, 100, None, True), (10, 100, (1.95, 2.30), False)]):
        sel = (col["k"] >= lo) & (col["k"] <= hi)
        kk = col["k"][sel]
        ax.plot(kk, col["lr_bound_eps0"][sel], "-", color="C0", lw=3, label="corrected bound (2), eps=0: 2(k-1)/(k-2)")
        ax.plot(kk, col["critical_lr"][sel], "--", color="C3", lw=1.5, label="exact critical rate (linearisation), coincides")
        ax.plot(kk, col["paper_closed_form"][sel], "-", color="C2", lw=1.5, label="paper's printed closed form (+4k)")
        ax.plot(kk, col["paper_ratio"][sel], ":", color="C1", lw=1.8, label="paper's printed ratio (= +3k denominator)")
        for lr, st in zip(lrs, ("-.", (0, (1, 1)))):
            ax.axhline(float(lr), color="grey", ls=st, lw=1, label=f"Figure 3 learning rate {lr}")
        ax.set_xlabel("number of class embeddings k")
        ax.set_ylabel("learning rate eta (Appendix D step)")
        ax.axvline(30, color="k", ls=(0, (2, 3)), lw=0.8, label="k = 30 (Figure 3 left/middle)")
        if logy:
            from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

            ax.set_yscale("log")
            ax.yaxis.set_major_locator(FixedLocator([1.9, 2.0, 2.1, 2.2, 2.5, 3.0, 3.5, 4.0]))
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_title("Theorem 1 bound vs k (log y-axis)")
        else:
            ax.set_ylim(*ylim)
            ax.set_title("zoom near 2: k = 10..100")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle("Theorem 1: derived vs printed learning-rate bound (eta = 2(k-1) x plain GD rate)")
    fig.tight_layout()
    try:
        fig.savefig(png_path, dpi=130, format=fmt)
    finally:
        plt.close(fig)
