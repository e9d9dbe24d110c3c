"""Statistics that only a multi-annotator study needs: Fleiss' kappa and the position-bias check.

The win ratio, its bootstrap CI and the sign test are :mod:`seer.eval.stats`'s (one implementation for the oracle's
tables and the humans'); this module adds what several human raters bring.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
from scipy.stats import binomtest


def fleiss_kappa(ratings: Iterable[Iterable[Hashable]]) -> dict[str, Any]:
    """Fleiss' kappa for items rated by several raters into nominal categories.

    ``ratings`` holds one sequence of category labels per item (any hashable labels; raters need not be the same
    people across items). Items with fewer than two ratings carry no agreement information and are left out. The
    number of raters may vary between items: the observed agreement of item i is
    ``P_i = (Σ_j n_ij² − n_i) / (n_i (n_i − 1))``, P̄ its mean over items, and chance agreement
    ``P_e = Σ_j p_j²`` with p_j the share of all ratings in category j (Fleiss 1971; with a constant n_i this is
    exactly his formula). ``kappa = (P̄ − P_e) / (1 − P_e)``; None when undefined (fewer than one usable item, or
    every rating in one category so that P_e = 1).

    Returns ``{"kappa", "observed_agreement", "chance_agreement", "n_items", "n_ratings"}``."""
    items = [list(r) for r in ratings]
    items = [r for r in items if len(r) >= 2]
    labels = sorted({x for r in items for x in r}, key=repr)
    if not items:
        return {"kappa": None, "observed_agreement": None, "chance_agreement": None, "n_items": 0, "n_ratings": 0}
    index = {c: j for j, c in enumerate(labels)}
    counts = np.zeros((len(items), len(labels)))  # (items, categories)
    for i, r in enumerate(items):
        for x in r:
            counts[i, index[x]] += 1
    n_i = counts.sum(1)
    p_i = ((counts**2).sum(1) - n_i) / (n_i * (n_i - 1))
    p_bar = float(p_i.mean())
    p_j = counts.sum(0) / counts.sum()
    p_e = float((p_j**2).sum())
    kappa = None if p_e >= 1.0 - 1e-12 else (p_bar - p_e) / (1.0 - p_e)
    return {
        "kappa": kappa,
        "observed_agreement": p_bar,
        "chance_agreement": p_e,
        "n_items": len(items),
        "n_ratings": int(counts.sum()),
    }


def position_bias(choices: Iterable[str]) -> dict[str, Any]:
    """How often the left image (A) wins among decided votes ('A', 'B'; 'tie' counted apart), with a two-sided exact
    binomial test against 0.5. With sides balanced and randomised by the study, a left rate far from 0.5 means
    annotators favour a position, not a system."""
    choices = list(choices)
    bad = sorted({c for c in choices if c not in ("A", "B", "tie")})
    if bad:
        raise ValueError(f"choices must be 'A', 'B' or 'tie'; got {bad}")
    left = choices.count("A")
    right = choices.count("B")
    ties = choices.count("tie")
    decided = left + right
    return {
        "left": left,
        "right": right,
        "ties": ties,
        "left_rate": left / decided if decided else None,
        "p_value": float(binomtest(left, decided, 0.5).pvalue) if decided else None,
    }
