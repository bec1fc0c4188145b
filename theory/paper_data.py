"""Numbers the CLOP paper prints about its theory, kept as data with their source.

Paper: CLOP, arXiv 2403.18699.  These are for side-by-side display in the theory report
only; no test uses them as expected values (the checks compare derived sympy expressions instead).
"""

from __future__ import annotations

PAPER_QUOTES: dict[str, dict] = {
    "theorem1_bound_k30": {
        "value": "2.03",
        "k": 30,
        "where": "Section 3.1, paragraph after Eq. (3)",
        "text": "according to Theorem 1, the upper bound for non-increasing class embedding means is 2.03",
    },
    "figure3_learning_rates": {
        "value": ("2.0", "2.1"),
        "k": 30,
        "where": "Figure 3 caption and Section 3.1",
        "text": "successful optimization with a learning rate of 2.0 ... complete collapse at a learning rate of 2.1",
    },
    "figure3_dimension": {
        "value": "100",
        "where": "Section 3.1",
        "text": "gradient descent to minimize the cosine similarity between each vector on a 100-dimensional unit ball",
    },
}
