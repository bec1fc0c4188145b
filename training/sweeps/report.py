"""Every figure and table of the CLOP paper's Section 5 that a set of results CSVs allows, written together.

:func:`make_all` writes under ``out`` (each name prefixed with ``prefix``): ``figure6.csv/.png`` (top-1 vs batch
size) and ``figure8.png`` (top-5), ``figure7.csv/.png`` (top-1 vs learning rate) and ``figure9.png`` (top-5),
``table1.md/.csv`` (lambda), ``table2.md/.csv`` (similarity), ``table3.md/.csv`` (augmentation), and
``figures.md``: what each figure shows, the rows it uses and the paper's claims about it (its curve values are
not printed in the paper, so nothing numeric is set beside ours). A figure or table without matching rows is
skipped with a printed note. Every output is staged and renamed into place only when all of them are complete
(:func:`clop.util.io.staged_outputs`): an interrupted run leaves the previous set of files as it was. Each
figure is drawn from the data in memory, the same data its CSV holds. The results are read and checked before
``out`` is created; while the outputs are written ``out`` is locked (:func:`clop.util.io.output_folder`), and
the temporaries a killed run left there are removed first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from clop.util.io import check_path_text, output_folder, staged_outputs
from training import paper_results as PR
from training.sweeps.figures import (
    figure_data,
    plot_sweep,
    select_figure6,
    select_figure7,
)
from training.sweeps.results import AUG_NAMES, METRIC_NAMES, load_results
from training.sweeps.tables import compare_table, select_table, table_markdown

__all__ = ["FIGURES", "output_names", "make_all"]

FIGURES = {
    # data name: (x column, [(png name = the paper's figure, metric)])
    "figure6": ("batch_size", [("figure6", "top1"), ("figure8", "top5")]),
    "figure7": ("lr", [("figure7", "top1"), ("figure9", "top5")]),
}


def output_names(prefix: str = "") -> list[str]:
    """Every file :func:`make_all` may write, with ``prefix``."""
    names = [f"{fig}.csv" for fig in FIGURES] + [f"{png}.png" for _, pngs in FIGURES.values() for png, _ in pngs]
    names += [f"{t}.{ext}" for t in PR.TABLES for ext in ("md", "csv")] + ["figures.md"]
    return [prefix + n for n in names]


def _figures_markdown(drawn: set[str], rules: dict[str, str], prefix: str) -> str:
    lines = ["# Figures 6-9 (CLOP paper): linear-probe accuracy vs batch size and vs learning rate — ours", "",
             PR.FIGURE_VALUES_NOTE, ""]
    for fig, (x, pngs) in FIGURES.items():
        cap = PR.FIGURE_CAPTIONS[fig]
        lines.append(f"## {cap.split(':')[0]}")
        lines.append("")
        lines.append(f"Paper caption: \"{cap}\"")
        lines.append("")
        if fig in drawn:
            files = ", ".join(f"`{prefix}{p}.png` ({METRIC_NAMES[m]})" for p, m in pngs)
            lines.append(f"Ours: {files}, data `{prefix}{fig}.csv` (mean over seeds; min–max bars).")
            lines.append(f"Rows used: {rules[fig]}.")
        else:
            lines.append(f"Ours: not drawn, no rows with {rules[fig]}.")
        lines += ["", "Claims of the paper about this figure:"]
        for c in PR.FIGURE_CLAIMS:
            if fig in c.figures:
                lines.append(f"- \"{c.quote}\" ({c.source})")
        lines.append("")
    lines.append("Notes on the text:")
    lines += [f"- {n}" for n in PR.TEXT_NOTES]
    return "\n".join(lines) + "\n"


def _check_options(prefix: str, base_lr: float, augmentation: str) -> None:
    if any(s in prefix for s in ("/", "\\")) or prefix in (".", ".."):
        raise ValueError(f"prefix must be a plain file-name prefix without path separators; got {prefix!r}")
    if isinstance(base_lr, bool) or not isinstance(base_lr, (int, float)) or not (math.isfinite(base_lr) and base_lr > 0):
        raise ValueError(f"base_lr must be a finite real number > 0; got {base_lr!r}")
    if augmentation not in AUG_NAMES:
        raise ValueError(f"augmentation must be one of {sorted(AUG_NAMES)}; got {augmentation!r}")


def _write_figure(stage, fig: str, rows, prefix: str, base_lr: float) -> list[str]:
    """Figure ``fig``'s CSV and its two PNGs (top-1, top-5) drawn from the same data; the file names."""
    x, pngs = FIGURES[fig]
    data = figure_data(rows, x)
    csv = f"{prefix}{fig}.csv"
    data.to_csv(stage(csv), index=False)
    files = [csv]
    what = "batch size (lr = {:g} × batch/256)".format(base_lr) if x == "batch_size" else \
        f"learning rate (batch {PR.LR_SWEEP_BATCH})"
    for png, metric in pngs:
        paper_fig = PR.FIGURE_CAPTIONS[png].split(":")[0]
        title = (f"{paper_fig} (CLOP paper), ours: {METRIC_NAMES[metric]} linear-probe accuracy vs {what}\n"
                 f"each variant with and without CLOP (λ = {PR.CLOP_LAMBDA:g}); % = labels used")
        foot = ("Mean over seeds; bars: min–max over seeds where there are several (n in "
                f"{csv}). The paper's curve values are not printed in its text, so none are shown.")
        plot_sweep(data, stage(f"{prefix}{png}.png"), x=x, metric=metric, title=title, footnote=foot, atomic=False)
        files.append(f"{prefix}{png}.png")
    return files


def _write_table(stage, name: str, rows, rule: str, prefix: str) -> list[str]:
    """Table ``name``'s CSV and Markdown report; the file names."""
    frame, extra = compare_table(rows, name)
    frame.to_csv(stage(f"{prefix}{name}.csv"), index=False)
    text = table_markdown(frame, extra, name, rule, show_variant=frame["variant"].nunique() > 1)
    stage(f"{prefix}{name}.md").write_text(text)
    return [f"{prefix}{name}.md", f"{prefix}{name}.csv"]


def make_all(results: Sequence[str | Path], out: str | Path = "paper_figures", *, prefix: str = "",
             base_lr: float = PR.BASE_LR, augmentation: str = "simclr") -> dict[str, list[Path]]:
    """Write every figure and table that the rows allow; print a note for each one skipped.

    Returns {name: [files written]} for name in figure6, figure7, table1, table2, table3, figures (empty
    list when skipped). Raises ValueError for unreadable input (see :func:`load_results`).
    """
    _check_options(prefix, base_lr, augmentation)
    if check_path_text(out, "--out").exists() and not Path(out).is_dir():  # before reading: created only to write
        raise ValueError(f"--out {str(out)!r} is a file; expected a folder (it is created if missing)")
    for path in results:
        check_path_text(path, "--results")
    df = load_results(results)
    written: dict[str, list[str]] = {}
    rules: dict[str, str] = {}
    notes: list[str] = []
    selected = {"figure6": select_figure6(df, base_lr=base_lr, augmentation=augmentation),
                "figure7": select_figure7(df, augmentation=augmentation)}
    selected.update({name: select_table(df, name, base_lr=base_lr, augmentation=augmentation) for name in PR.TABLES})

    with (output_folder(out, "--out", program="training.plots", outputs=output_names(prefix)) as out,
          staged_outputs(out) as stage):  # every file, or none: an interrupted run keeps the previous set
        for name, (rows, rule) in selected.items():
            rules[name] = rule
            if rows.empty:
                notes.append(f"note: {name} skipped: no rows match ({rule}); {len(df)} rows read")
                written[name] = []
            elif name in FIGURES:
                written[name] = _write_figure(stage, name, rows, prefix, base_lr)
            else:
                written[name] = _write_table(stage, name, rows, rule, prefix)
        stage(f"{prefix}figures.md").write_text(_figures_markdown({f for f in FIGURES if written[f]}, rules, prefix))
        written["figures"] = [f"{prefix}figures.md"]

    for note in notes:
        print(note)
    paths = {k: [out / n for n in names] for k, names in written.items()}
    for files in paths.values():
        if files:
            print(f"wrote {', '.join(str(f) for f in files)}")
    return paths
