"""The claims of Table 5 and Figure 5 of arXiv 2403.18699 (Sec. 4, Appendix B) as claim records
(:mod:`clop.claims`), one pair per loss and data regime, read from the verdict table of
:func:`simulations.ffn.report.verdict_table` (as written to ``table5_verdicts.csv``).

* ``T5-<regime>-<loss>-raises``: "CLOP raises the KNN accuracy" (Sec. 4: "The accuracy results further
  corroborate the improvement in embedding quality facilitated by CLOP");
* ``T5-<regime>-<loss>-size``: ... by the gain Table 5 prints.

The verdicts are those of the table (:mod:`clop.stats`); nothing is decided here.
"""

from __future__ import annotations

import math

import pandas as pd

from clop.claims import Claim
from simulations.ffn.report import NEGLIGIBLE_PP, PAPER_TABLE5
from simulations.ffn.train import DISPLAY

__all__ = ["table5_claims", "REGIME_FOLDER", "REGIME_COMMAND"]

REGIME_FOLDER = {"separable": "", "overlapping": "table5_overlap/"}
"""Where each regime's files lie under paper_figures/ (reproduce.py's layout)."""
REGIME_COMMAND = {
    "separable": "python simulations/synthetic_ffn.py --out paper_figures",
    "overlapping": "python simulations/synthetic_ffn.py --magnitudes normal --min-angle 0 --out paper_figures/table5_overlap",
}


def _margin(value: float) -> str:
    return "no margin (undecidable)" if math.isnan(value) else f"margin {value:.1f} SE"


def table5_claims(verdicts: pd.DataFrame, regime: str) -> list[Claim]:
    """Two claims per loss of ``verdicts`` (the verdict table of one data ``regime``)."""
    folder = REGIME_FOLDER.get(regime, "")
    command = REGIME_COMMAND.get(regime, "python simulations/synthetic_ffn.py")
    evidence = f"{folder}table5.md; {folder}table5_verdicts.csv; {folder}figure5.png"
    claims = []
    for _, r in verdicts.iterrows():
        name, paper = DISPLAY[r["loss"]], PAPER_TABLE5[r["loss"]]
        gain = f"{r['gain_mean']:+.2f} pp [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}], n = {int(r['n'])} seeds"
        tested = (f"KNN accuracy (k = 5, 10 % labels) of the 3-layer FFN on synthetic 3-D data ({regime} classes), each "
                  "CLOP run paired with the same seed's run without it; 95 % t-interval of the paired gain")
        claims.append(Claim(
            id=f"T5-{regime}-{r['loss']}-raises", where="Sec. 4, Figure 5; Appendix B, Table 5",
            quote=f"The accuracy results further corroborate the improvement in embedding quality facilitated by CLOP ({name})",
            tested=tested + f"; raises = above 0 and beyond the negligible +{NEGLIGIBLE_PP:g} pp by 2 SE",
            verdict=r["raises_verdict"], result=f"{gain}; {r['raises_reason']} ({_margin(r['raises_margin_se'])})",
            evidence=evidence, command=command))
        claims.append(Claim(
            id=f"T5-{regime}-{r['loss']}-size", where="Appendix B, Table 5",
            quote=f"Table 5, {name}: KNN accuracy {paper['without']:.2f} % without CLOP, {paper['with']:.2f} % with it "
                  f"(+{paper['with'] - paper['without']:.2f} pp)",
            tested=tested + "; the printed gain inside the interval, which clears 0 by 2 SE",
            verdict=r["size_verdict"], result=f"{gain}; {r['size_reason']} ({_margin(r['size_margin_se'])})",
            evidence=evidence, command=command))
    return claims
