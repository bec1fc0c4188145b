"""Figure 5 of the CLOP paper (arXiv 2403.18699): the 3D embeddings of the synthetic experiment.

:func:`embeddings_frame` turns the evaluated embeddings of one seed into a long table (written as
figure5_embeddings.csv); :func:`plot_figure5` draws the figure from that table, in memory or read back
from the CSV, so the figure can be redrawn without training again.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from simulations.ffn.data import SyntheticData, knn_accuracy
from simulations.ffn.report import PAPER_TABLE5
from simulations.ffn.train import COSINE_LOSSES, DISPLAY, LOSSES

__all__ = ["COLORS", "embeddings_frame", "plot_figure5"]


def embeddings_frame(embs: dict, data: SyntheticData, seed_index: int = 0, regime: str = "custom"):
    """Long table of the embeddings of one seed: regime, loss, clop, seed, index, label, labeled, z0, z1, z2.

    regime: the data regime's name (:func:`simulations.ffn.data.regime_of`), written into every row so that
    the figure drawn from the CSV can name it.
    """
    frames = []
    y = data.y[seed_index].numpy()
    lab = data.labeled[seed_index].numpy()
    for (name, c), e in embs.items():
        z = e[seed_index].numpy()
        frames.append(
            pd.DataFrame(
                {
                    "regime": regime,
                    "loss": name,
                    "clop": c,
                    "seed": data.seeds[seed_index],
                    "index": np.arange(len(y)),
                    "label": y,
                    "labeled": lab,
                    "z0": z[:, 0],
                    "z1": z[:, 1],
                    "z2": z[:, 2],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
"""Colours of the classes (class c gets COLORS[c mod 5])."""


def _draw_panel(ax, sub: pd.DataFrame, name: str, c: bool, classes) -> None:
    """One 3D scatter: the embeddings of one configuration, coloured by class, titled with its KNN accuracy."""
    if sub.empty:
        ax.set_axis_off()
        return
    z = sub[["z0", "z1", "z2"]].to_numpy()
    y = sub["label"].to_numpy()
    lab = sub["labeled"].to_numpy().astype(bool)
    acc = knn_accuracy(z, y, lab)
    for cl in classes:
        m = y == cl
        ax.scatter(z[m, 0], z[m, 1], z[m, 2], s=6, color=COLORS[int(cl) % len(COLORS)], alpha=0.7)
    kind = "L2-normalised output" if name in COSINE_LOSSES else "raw output"
    ax.set_title(
        f"{DISPLAY[name]}{' + CLOP' if c else ''}\nKNN acc. {100 * acc:.2f}% "
        f"(paper {PAPER_TABLE5[name]['with' if c else 'without']:.2f}%)\n[{kind}]",
        fontsize=10,
    )
    ax.set_xlabel("$z_1$ (a.u.)", fontsize=8, labelpad=2)
    ax.set_ylabel("$z_2$ (a.u.)", fontsize=8, labelpad=2)
    ax.set_zlabel("$z_3$ (a.u.)", fontsize=8, labelpad=2)
    ax.tick_params(labelsize=7, pad=0)


def plot_figure5(embeddings: pd.DataFrame | str | os.PathLike, png_path: str | os.PathLike) -> Path:
    """Figure 5 / Table 5 pictures: 2 x 4 grid of 3D scatter plots drawn from :func:`embeddings_frame`'s table
    (a DataFrame, or the path of figure5_embeddings.csv). Writes ``png_path`` as given (no temporary file:
    callers that replace a finished figure stage the path with clop.util.io).

    Rows: without / with CLOP; columns: InfoNCE, DCL, VICReg, BarlowTwins. Colour = true class; the title
    of each panel carries the KNN accuracy recomputed from the CSV (labeled rows fit, the others score);
    the figure title names the data regime (the CSV's regime column).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    df = embeddings if isinstance(embeddings, pd.DataFrame) else pd.read_csv(embeddings)
    fig = plt.figure(figsize=(18, 10.5))
    seed = int(df["seed"].iloc[0])
    regime = str(df["regime"].iloc[0]) if "regime" in df.columns else "custom"
    regime_text = {
        "separable": "separable regime: class lines >= 45 degrees apart, |t| in [1, 2]",
        "overlapping": "overlapping regime: class lines through the origin, t ~ N(0, 1)",
    }.get(regime, "custom data settings")
    classes = sorted(df["label"].unique())
    for row, c in enumerate((False, True)):
        for col, name in enumerate(LOSSES):
            ax = fig.add_subplot(2, 4, row * 4 + col + 1, projection="3d")
            _draw_panel(ax, df[(df["loss"] == name) & (df["clop"] == c)], name, c, classes)
    handles = [
        Line2D([], [], marker="o", linestyle="", color=COLORS[int(cl) % len(COLORS)], label=f"class {int(cl)}")
        for cl in classes
    ]
    # in the right margin, below the two-line title
    fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(0.998, 0.935), title="true label", fontsize=10)
    fig.suptitle(
        f"CLOP paper Fig. 5 / Table 5 - synthetic 3D data, {regime_text}\n3-layer FFN output embeddings without "
        f"CLOP (top row) and with CLOP (bottom row), seed {seed}; KNN (k = 5) fitted on the 10% labeled points, "
        "accuracy on the other 90%; colour = true class",
        fontsize=13,
    )
    fig.subplots_adjust(left=0.02, right=0.93, bottom=0.03, top=0.86, wspace=0.12, hspace=0.28)
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path
