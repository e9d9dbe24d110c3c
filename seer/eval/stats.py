"""Statistics for the paper's tables: win ratio (ties 0.5), bootstrap confidence intervals, a sign test against 0.5,
evaluator accuracy and position consistency, and the Total / ID / OOD × Simple / Hard breakdown of Tables 1–3.

Units of analysis. A *score* is one judgment of SEER against an opponent on one test case: 1 (SEER preferred),
0.5 (tie), 0 (opponent preferred) — App. A.2's scoring. When several judges (annotators) score the same case, call
:func:`case_scores` first: the case is the independent unit, so the bootstrap resamples cases and the sign test
counts cases, never individual votes of the same case as if they were independent.

Significance. :func:`sign_test` is the two-sided exact binomial (sign) test of H0 "SEER and the opponent are equally
likely to be preferred" on the cases with a winner: **ties are dropped** (the classical sign-test treatment; a tie
carries no information about the direction). A case scored exactly 0.5 (a tie, or an even split of votes) is a tie.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
from scipy.stats import binomtest

from seer.data import DISTRIBUTIONS, difficulty

T = TypeVar("T")

# The column layout of Tables 1–3: Total | In-Distribution (Overall, Simp, Hard) | Out-Of-Distribution (...).
BREAKDOWN = (
    ("total", None, None),
    ("id_overall", "id", None),
    ("id_simple", "id", "simple"),
    ("id_hard", "id", "hard"),
    ("ood_overall", "ood", None),
    ("ood_simple", "ood", "simple"),
    ("ood_hard", "ood", "hard"),
)
COLUMNS = tuple(name for name, _, _ in BREAKDOWN)
COLUMN_LABELS = {
    "total": "Total",
    "id_overall": "ID Overall",
    "id_simple": "ID Simp",
    "id_hard": "ID Hard",
    "ood_overall": "OOD Overall",
    "ood_simple": "OOD Simp",
    "ood_hard": "OOD Hard",
}


def _as_scores(scores: Iterable[float]) -> np.ndarray:
    arr = np.asarray(list(scores), dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"scores must be a flat sequence, got shape {arr.shape}")
    if arr.size and (np.isnan(arr).any() or arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError("scores must lie in [0, 1] (1 = win, 0.5 = tie, 0 = loss)")
    return arr


def win_ratio(scores: Iterable[float]) -> float:
    """Mean score with wins 1, ties 0.5, losses 0 (App. A.2). NaN for no scores."""
    arr = _as_scores(scores)
    return float(arr.mean()) if arr.size else float("nan")


def case_scores(votes: Iterable[tuple[Any, float]]) -> dict[Any, float]:
    """(case id, score) votes from several judges → one score per case, the mean of its votes (insertion order)."""
    sums: dict[Any, list[float]] = {}
    for case, score in votes:
        sums.setdefault(case, []).append(float(score))
    return {case: float(np.mean(v)) for case, v in sums.items()}


def bootstrap_ci(
    values: Iterable[float], *, n_boot: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling the values with replacement, seeded).

    With fewer than two values the interval is undefined: NaN bounds for none, the value itself for one."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    if arr.size == 1:
        return float(arr[0]), float(arr[0])
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // arr.size)  # bounded memory: (chunk, n) index matrices
    for s in range(0, n_boot, chunk):
        k = min(chunk, n_boot - s)
        means[s : s + k] = arr[rng.integers(0, arr.size, (k, arr.size))].mean(1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def sign_test(scores: Iterable[float]) -> float:
    """Two-sided exact binomial test of wins vs losses against p = 0.5, ties (score 0.5) dropped.

    A score above 0.5 is a win, below a loss (so per-case means of several votes work too). 1.0 when no case has a
    winner."""
    arr = _as_scores(scores)
    wins = int((arr > 0.5).sum())
    losses = int((arr < 0.5).sum())
    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class WinStats:
    """One row cell of Tables 2–3: the win ratio with its counts, 95% bootstrap CI and sign-test p-value."""

    n: int
    wins: int
    ties: int
    losses: int
    win_ratio: float
    ci_low: float
    ci_high: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_wins(scores: Iterable[float], *, n_boot: int = 10_000, seed: int = 0) -> WinStats:
    """Win ratio, counts, bootstrap CI and sign-test p-value of per-case scores."""
    arr = _as_scores(scores)
    lo, hi = bootstrap_ci(arr, n_boot=n_boot, seed=seed)
    return WinStats(
        n=int(arr.size),
        wins=int((arr > 0.5).sum()),
        ties=int((arr == 0.5).sum()),
        losses=int((arr < 0.5).sum()),
        win_ratio=win_ratio(arr),
        ci_low=lo,
        ci_high=hi,
        p_value=sign_test(arr),
    )


def accuracy(correct: Iterable[bool]) -> float:
    """Fraction correct; NaN for none."""
    arr = np.asarray(list(correct), dtype=bool)
    return float(arr.mean()) if arr.size else float("nan")


@dataclass(frozen=True)
class AccuracyStats:
    """One row cell of Table 1: accuracy over every judgment with its bootstrap CI and count."""

    n: int
    accuracy: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_accuracy(correct: Iterable[bool], *, n_boot: int = 10_000, seed: int = 0) -> AccuracyStats:
    arr = np.asarray(list(correct), dtype=np.float64)
    lo, hi = bootstrap_ci(arr, n_boot=n_boot, seed=seed)
    return AccuracyStats(n=int(arr.size), accuracy=accuracy(arr.astype(bool)), ci_low=lo, ci_high=hi)


def position_consistent(verdict_chosen_first: str | None, verdict_chosen_second: str | None) -> bool:
    """Whether an evaluator picked the same underlying image in both presentation orders.

    ``verdict_chosen_first`` is its verdict ('A'/'B', None = unparseable) with the chosen image shown as A,
    ``verdict_chosen_second`` with it shown as B. Consistent means A then B (always the chosen image) or B then A
    (always the rejected one); an unparseable verdict is never consistent."""
    return (verdict_chosen_first, verdict_chosen_second) in (("A", "B"), ("B", "A"))


def position_consistency_rate(pairs: Iterable[tuple[str | None, str | None]]) -> float:
    """Fraction of quadruplets whose two verdicts (chosen image as A, chosen image as B) are position-consistent."""
    return accuracy(position_consistent(a, b) for a, b in pairs)


def breakdown(
    items: Sequence[T],
    *,
    distribution: Callable[[T], str] = lambda x: x.distribution,  # type: ignore[attr-defined]
    category: Callable[[T], str] = lambda x: x.category,  # type: ignore[attr-defined]
) -> dict[str, list[T]]:
    """Split ``items`` into the seven columns of Tables 1–3 (``COLUMNS``), keeping their order.

    An unknown category or distribution raises (naming it), so a mislabelled item can never fall out of the table."""
    out: dict[str, list[T]] = {name: [] for name in COLUMNS}
    for item in items:
        dist, diff = distribution(item), difficulty(category(item))
        if dist not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {dist!r}; expected one of {DISTRIBUTIONS}")
        for name, want_dist, want_diff in BREAKDOWN:
            if (want_dist is None or want_dist == dist) and (want_diff is None or want_diff == diff):
                out[name].append(item)
    return out


def breakdown_table(
    items: Sequence[T], summarize: Callable[[list[T]], Any], **keys: Callable[[T], str]
) -> dict[str, Any]:
    """``{column: summarize(items in that column)}`` for the seven columns; an empty column maps to None."""
    return {name: (summarize(group) if group else None) for name, group in breakdown(items, **keys).items()}
