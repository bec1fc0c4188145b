"""What the CLOP paper prints about its ResNet benchmarks (Sec. 5), as data with its source.

Paper: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP), arXiv 2403.18699.
Section 5 ("Experiment") runs ResNet-50 in the SimCLR framework on CIFAR-100, Tiny-ImageNet and ImageNet and
reports top-1 / top-5 accuracy of a supervised linear classifier.

What is printed as numbers (the three ablation tables, which the arXiv text export places after the
Conclusion, between the first references):

* Table 1 "Accuracy of different λ values": SupCon + CLOP, batch 1024, λ in {0.1, 0.5, 1.0, 1.5},
  CIFAR-100 and Tiny-ImageNet (Sec. 5, "Ablation Study on λ Tuning").
* Table 2 "Accuracy of different similarity metric": cosine / Euclidean / Manhattan in Eq. (4), ResNet-50
  on CIFAR-100 (Sec. 5, "Ablation Study on the Choice of Similarity Metric"; the text calls it "Table 5").
* Table 3 "Accuracy of different augmentation strategies": RandAugment, AutoAugment (ImageNet policy),
  SimCLR, ResNet-50 on Tiny-ImageNet, batch 1024 (Sec. 5, "Ablation Study on the Choice of Augmentation").

:func:`table1`, :func:`table2`, :func:`table3` return them as long pandas DataFrames (one row per printed
row and dataset; shapes in each docstring), with our column names and values (``dataset``: ``cifar100`` /
``tiny-imagenet``; ``augmentation``: ``randaugment`` / ``autoaugment`` / ``simclr``; top-1 / top-5 as the
fractions the paper prints). :data:`TABLES` holds the same tables with caption, source and the settings the
text states.

What is NOT printed as numbers: Figures 6 and 7 (top-1 vs batch size and vs learning rate) and their top-5
versions in Appendix B (Figures 8 and 9) are images; the text holds only their captions. Their curve values
are therefore not available here (:data:`FIGURE_VALUES_AVAILABLE` is False); :data:`FIGURE_CLAIMS` records
what Sec. 5 (and the Conclusion) says about them, verbatim, with the paragraph each sentence comes from.

Readings of the printed numbers (derived by :func:`cross_table_matches`, not typed in):

* Table 2's cosine row equals Table 1's CIFAR-100 row at λ = 1.0 (0.754 / 0.938): the similarity ablation
  is, by all appearances, SupCon + CLOP with λ = 1 at batch 1024, which the text does not say.
* Table 3's RandAug row equals Table 1's Tiny-ImageNet row at λ = 1.0 (0.696 / 0.900, printed "0.9"): the
  λ ablation on Tiny-ImageNet apparently used RandAugment, although Sec. 5 says all experiments use the
  SimCLR framework; with SimCLR augmentation the paper's Tiny-ImageNet top-1 is 0.499 (Table 3).

Example::

    >>> from training import paper_results as P
    >>> t1 = P.table1()
    >>> t1.shape
    (8, 4)
    >>> list(t1.columns)
    ['dataset', 'clop_lambda', 'top1', 'top5']
    >>> sorted(P.table2()["similarity"])
    ['cosine', 'euclidean', 'manhattan']
    >>> P.FIGURE_VALUES_AVAILABLE
    False
"""

from __future__ import annotations

import dataclasses

import pandas as pd

__all__ = [
    "PaperTable",
    "PaperClaim",
    "TABLES",
    "TABLE1",
    "TABLE2",
    "TABLE3",
    "table1",
    "table2",
    "table3",
    "paper_table",
    "FIGURE_CLAIMS",
    "FIGURE_VALUES_AVAILABLE",
    "FIGURE_VALUES_NOTE",
    "FIGURE_CAPTIONS",
    "BATCH_SIZES",
    "BASE_LR",
    "EPOCHS",
    "LR_RANGE",
    "LR_SWEEP_BATCH",
    "LR_GRID",
    "ABLATION_BATCH",
    "CLOP_LAMBDA",
    "LABEL_FRACTIONS",
    "TEXT_NOTES",
    "cross_table_matches",
]

# ----------------------------------------------------------------------------------------------------
# Settings stated in Sec. 5 (verbatim phrases in the comments)
# ----------------------------------------------------------------------------------------------------

#: "We trained models with batch sizes of 32, 64, 128, 256, 512, 1024, and 2048" (Sec. 5, Figure 6).
BATCH_SIZES: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
#: "The learning rate was fixed at (0.3 x batch size/256)" (Sec. 5, Figure 6): lr = BASE_LR * batch / 256.
BASE_LR: float = 0.3
#: "on CIFAR-100 and ImageNet for 200 epochs and on Tiny-ImageNet for 100 epochs" (Sec. 5, Figures 6 and 7).
EPOCHS: dict[str, int] = {"cifar100": 200, "imagenet": 200, "tiny-imagenet": 100}
#: "learning rates ranging from 0.1 to 10 ... using a batch size of 1024" (Sec. 5, Figure 7).
LR_RANGE: tuple[float, float] = (0.1, 10.0)
LR_SWEEP_BATCH: int = 1024
#: Our grid inside LR_RANGE: the paper does not print which learning rates it ran (our choice).
LR_GRID: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)
#: "keeping the batch size fixed at 1024" (λ ablation); "with a batch size of 1024" (augmentation ablation).
ABLATION_BATCH: int = 1024
#: "a hand-tuned hyperparameter, λ = 1" (Sec. 5, first paragraph).
CLOP_LAMBDA: float = 1.0
#: "we employ 10% of the labeled data" (InfoNCE, semi-supervised); "we utilize all labels" (SupCon).
LABEL_FRACTIONS: dict[str, float] = {"infonce": 0.1, "supcon": 1.0}


@dataclasses.dataclass(frozen=True)
class PaperTable:
    """One printed table: ``columns`` names the entries of each tuple in ``rows``."""

    name: str  # our name, e.g. "table1"
    caption: str  # the caption, verbatim
    source: str  # where it is printed and where the text discusses it
    settings: str  # what the text states about the runs behind it
    key: str  # the column that varies across the printed rows
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    loss: str  # the loss of the runs behind the numbers (with CLOP, orthonormal prototypes)
    label_fraction: float  # their label fraction
    variant_source: str  # whether loss / label fraction are stated or inferred, and from what
    notes: tuple[str, ...] = ()

    def frame(self) -> pd.DataFrame:
        """The table as a new DataFrame, one row per entry of ``rows`` (columns ``self.columns``)."""
        return pd.DataFrame(list(self.rows), columns=list(self.columns))


TABLE1 = PaperTable(
    name="table1",
    caption="Table 1: Accuracy of different λ values.",
    source=("CLOP paper, Sec. 5 'Ablation Study on λ Tuning' (discussion), Table 1 (printed after the "
            "Conclusion, amid the first references of the text export, lines 187-194)"),
    settings=("SupCon loss + CLOP, batch size 1024, λ in {0.1, 0.5, 1.0, 1.5}, CIFAR-100 and Tiny-ImageNet, "
              "ResNet-50; the learning rate, label fraction and augmentation are not stated for this table"),
    key="clop_lambda",
    columns=("dataset", "clop_lambda", "top1", "top5"),
    rows=(
        ("cifar100", 0.1, 0.745, 0.935),
        ("cifar100", 0.5, 0.740, 0.931),
        ("cifar100", 1.0, 0.754, 0.938),
        ("cifar100", 1.5, 0.760, 0.937),
        ("tiny-imagenet", 0.1, 0.616, 0.868),
        ("tiny-imagenet", 0.5, 0.695, 0.909),
        ("tiny-imagenet", 1.0, 0.696, 0.900),
        ("tiny-imagenet", 1.5, 0.696, 0.893),
    ),
    loss="supcon",
    label_fraction=1.0,
    variant_source=("stated: 'we trained the model with SupCon loss across different λ values'; all labels: 'For "
                    "fully-supervised learning, we utilize all labels in the training datasets for both SupCon and CLOP'"),
    notes=("Text: 'the performance remains stable for λ values ranging from 0.1 to 1.5, with λ = 1.0 and "
           "λ = 1.5 yielding the best overall performance.'",),
)

TABLE2 = PaperTable(
    name="table2",
    caption="Table 2: Accuracy of different similarity metric.",
    source=("CLOP paper, Sec. 5 'Ablation Study on the Choice of Similarity Metric' (which calls it "
            "'Table 5'), Table 2 (text export lines 196-201)"),
    settings=("s(z, c) of Eq. (4) = cosine, Euclidean or Manhattan similarity; 'the same ResNet-50 architecture "
              "on CIFAR-100'; loss, λ, batch size and learning rate are not stated (the cosine row equals "
              "Table 1's CIFAR-100 λ = 1.0 row, so SupCon + CLOP, λ = 1, batch 1024 by all appearances)"),
    key="similarity",
    columns=("dataset", "similarity", "top1", "top5"),
    rows=(
        ("cifar100", "cosine", 0.754, 0.938),
        ("cifar100", "euclidean", 0.749, 0.933),
        ("cifar100", "manhattan", 0.715, 0.899),
    ),
    loss="supcon",
    label_fraction=1.0,
    variant_source="inferred: the loss is not stated; the cosine row equals Table 1's SupCon + CLOP row at λ = 1.0",
    notes=("Text: 'cosine similarity, which aligns with L_CL in Eq. (4), achieves the highest performance.'",
           "The text refers to this table as 'Table 5' (Table 5 is the synthetic-data table of Appendix B)."),
)

TABLE3 = PaperTable(
    name="table3",
    caption="Table 3: Accuracy of different augmentation strategies.",
    source=("CLOP paper, Sec. 5 'Ablation Study on the Choice of Augmentation', Table 3 (text export lines "
            "203-208); the paragraph names the three policies but states no result and does not cite the table"),
    settings=("'the same ResNet-50 model on Tiny-ImageNet with a batch size of 1024'; RandAugment (three random "
              "operations), AutoAugment with the ImageNet policy (Cubuk et al. 2018), the SimCLR policy; loss, "
              "λ and learning rate are not stated (the RandAug row equals Table 1's Tiny-ImageNet λ = 1.0 row)"),
    key="augmentation",
    columns=("dataset", "augmentation", "printed_name", "top1", "top5"),
    rows=(
        ("tiny-imagenet", "randaugment", "RandAug", 0.696, 0.900),  # printed "0.9"
        ("tiny-imagenet", "autoaugment", "AutoAug-Imagenet", 0.546, 0.776),
        ("tiny-imagenet", "simclr", "SimCLR", 0.499, 0.770),  # printed "0.77"
    ),
    loss="supcon",
    label_fraction=1.0,
    variant_source="inferred: the loss is not stated; the RandAug row equals Table 1's SupCon + CLOP row at λ = 1.0",
    notes=("RandAug's top-5 is printed '0.9' and SimCLR's '0.77' (two and one decimals fewer than the others).",),
)

#: The printed tables by name.
TABLES: dict[str, PaperTable] = {t.name: t for t in (TABLE1, TABLE2, TABLE3)}


def paper_table(name: str) -> pd.DataFrame:
    """A printed table as a new DataFrame; ``name`` is one of ``TABLES`` ("table1", "table2", "table3")."""
    if name not in TABLES:
        raise ValueError(f"name must be one of {sorted(TABLES)}; got {name!r}")
    return TABLES[name].frame()


def table1() -> pd.DataFrame:
    """Table 1 (λ ablation), shape (8, 4): columns ``dataset, clop_lambda, top1, top5``; 4 λ x 2 datasets."""
    return TABLE1.frame()


def table2() -> pd.DataFrame:
    """Table 2 (similarity ablation), shape (3, 4): columns ``dataset, similarity, top1, top5``; CIFAR-100."""
    return TABLE2.frame()


def table3() -> pd.DataFrame:
    """Table 3 (augmentation ablation), shape (3, 5): columns ``dataset, augmentation, printed_name, top1,
    top5``; Tiny-ImageNet."""
    return TABLE3.frame()


# ----------------------------------------------------------------------------------------------------
# Figures 6-9: captions and the claims of the text (the curves themselves are images)
# ----------------------------------------------------------------------------------------------------

#: The curve values of Figures 6-9 are not in the text export.
FIGURE_VALUES_AVAILABLE = False
FIGURE_VALUES_NOTE = (
    "Figures 6 and 7 (top-1) and Figures 8 and 9 (Appendix B, top-5) are images: the paper's text holds only "
    "their captions, so their curve values are not available; only the claims of Sec. 5 about them can be "
    "set beside our measurements."
)

#: Captions, verbatim (Figures 8 and 9 say "Top-1" although Sec. 5 says Appendix B holds the top-5 results).
FIGURE_CAPTIONS: dict[str, str] = {
    "figure6": "Figure 6: Top-1 classification accuracy across different batch sizes. The percentage of labels "
               "used for supervised training is indicated in the legend.",
    "figure7": "Figure 7: Top-1 classification accuracy across different different learning rates. The "
               "percentage of labels used for supervised training is indicated in the legend.",
    "figure8": "Figure 8: Top-1 classification accuracy across different batch sizes. The percentage of labels "
               "used for supervised training is indicated in the legend.",
    "figure9": "Figure 9: Top-1 classification accuracy across different different learning rates. The "
               "percentage of labels used for supervised training is indicated in the legend.",
}


@dataclasses.dataclass(frozen=True)
class PaperClaim:
    """A sentence of the paper about a figure: ``quote`` is verbatim, ``source`` says where it stands."""

    key: str
    figures: tuple[str, ...]  # the figures it is about, e.g. ("figure6",)
    quote: str
    source: str


_P6 = "CLOP paper, Sec. 5, paragraph 'CLOP Enables Smaller Batch Sizes' (about Figure 6)"
_P7 = "CLOP paper, Sec. 5, paragraph 'CLOP Prevents Collapse with Large Learning Rates' (about Figure 7)"

FIGURE_CLAIMS: tuple[PaperClaim, ...] = (
    PaperClaim("fig6_clop_better_every_batch", ("figure6",),
               "CLOP consistently outperformed the baseline methods across all batch sizes.", _P6),
    PaperClaim("fig6_baselines_best_above_1024", ("figure6",),
               "As reported in the original papers Chen et al. (2020a); Khosla et al. (2020), contrastive "
               "learning performs optimally when the batch size exceeds 1024, a finding corroborated by our "
               "experiments.", _P6),
    PaperClaim("fig6_less_degradation_small_batch", ("figure6",),
               "However, with the addition of CLOP, we observe significantly less performance degradation at "
               "smaller batch sizes.", _P6),
    PaperClaim("fig6_clop32_matches_supcon2048_cifar100", ("figure6",),
               "Remarkably, CLOP achieved similar accuracy with a batch size of 32 compared to the baseline "
               "SupCon with a batch size of 2048 for CIFAR-100.", _P6),
    PaperClaim("fig7_clop_better_every_lr", ("figure7",),
               "Across both datasets, CLOP consistently outperforms the baseline methods.", _P7),
    PaperClaim("fig7_baselines_collapse_at_lr10", ("figure7",),
               "Moreover, as demonstrated by Theorem 1, excessively large learning rates can lead to complete "
               "collapse, as clearly observed in the baseline methods at a learning rate of 10 on both "
               "datasets.", _P7),
    PaperClaim("fig7_clop_less_degradation_large_lr", ("figure7",),
               "However, with the incorporation of CLOP into the loss function, we observe a significantly "
               "smaller performance degradation on both datasets.", _P7),
    PaperClaim("conclusion_small_batch", ("figure6",),
               "Additionally, our results indicate that CLOP enables the model to perform exceptionally well "
               "even with small batch sizes (e.g., 32), making the method particularly suitable for edge "
               "devices with limited memory.", "CLOP paper, Sec. 6 'Conclusion', second paragraph"),
)

#: Loose ends of the text that matter when reading Figures 6-9 and Tables 1-3 (our remarks).
TEXT_NOTES: tuple[str, ...] = (
    "Sec. 5 lists three datasets (CIFAR-100, Tiny-ImageNet, ImageNet) for Figures 6 and 7, but the Figure 7 "
    "paragraph speaks of 'both datasets'; which panels the figures hold cannot be read from the text.",
    "The learning-rate grid of Figure 7 is not printed, only its range 0.1 to 10; LR_GRID is our choice.",
    "Figures 8 and 9 (Appendix B) are captioned 'Top-1', while Sec. 5 says Appendix B reports top-5.",
    "Table 2 is called 'Table 5' in the text.",
    "The tables state no learning rate; BASE_LR (0.3 x batch/256, the rule given for Figure 6) is our assumption.",
)


def cross_table_matches() -> list[str]:
    """Rows printed in two tables with identical (top-1, top-5): a hint that they are the same runs.

    Compares every row of Table 2 and Table 3 with every row of Table 1 on the same dataset and returns one
    sentence per match (computed from the data above, so it stays true if a number is corrected).
    """
    out = []
    t1 = table1()
    for other in (TABLE2, TABLE3):
        for _, r in other.frame().iterrows():
            same = t1[(t1["dataset"] == r["dataset"]) & (t1["top1"] == r["top1"]) & (t1["top5"] == r["top5"])]
            for _, m in same.iterrows():
                out.append(
                    f"{other.caption.split(':')[0]} row {other.key}={r[other.key]} on {r['dataset']} "
                    f"({r['top1']:.3f} / {r['top5']:.3f}) equals Table 1 at λ={m['clop_lambda']:g}"
                )
    return out
