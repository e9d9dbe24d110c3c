"""Tier 1: the statistics of the paper's tables on hand-made and simulated data."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from seer.eval import stats


def test_win_ratio_counts_ties_as_half():
    assert stats.win_ratio([1, 1, 0, 0.5]) == pytest.approx(0.625)
    assert stats.win_ratio([0.5] * 7) == 0.5
    assert np.isnan(stats.win_ratio([]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.win_ratio([1.5])


def test_case_scores_average_votes_per_case():
    votes = [("c1", 1), ("c1", 0), ("c1", 1), ("c2", 0.5), ("c2", 0)]
    assert stats.case_scores(votes) == {"c1": pytest.approx(2 / 3), "c2": pytest.approx(0.25)}


def test_sign_test_exact_values():
    # 10 wins, 0 losses: two-sided p = 2 * 0.5**10
    assert stats.sign_test([1] * 10) == pytest.approx(2 * 0.5**10)
    assert stats.sign_test([0] * 10) == pytest.approx(2 * 0.5**10)
    assert stats.sign_test([1] * 5 + [0] * 5) == pytest.approx(1.0)
    # ties are dropped: 10 wins + 20 ties is the same test as 10 wins
    assert stats.sign_test([1] * 10 + [0.5] * 20) == pytest.approx(2 * 0.5**10)
    # 8 of 10: p = 2 * (C(10,8) + C(10,9) + C(10,10)) / 2**10 = 112 / 1024
    assert stats.sign_test([1] * 8 + [0] * 2) == pytest.approx(112 / 1024)
    assert stats.sign_test([0.5, 0.5]) == 1.0
    assert stats.sign_test([]) == 1.0


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, 80).astype(float)
    a = stats.bootstrap_ci(x, n_boot=2000, seed=3)
    b = stats.bootstrap_ci(x, n_boot=2000, seed=3)
    assert a == b
    assert a[0] < x.mean() < a[1]
    assert stats.bootstrap_ci([1.0]) == (1.0, 1.0)
    assert all(np.isnan(v) for v in stats.bootstrap_ci([]))


def test_bootstrap_ci_covers_the_truth_about_95_percent():
    # simulated win/tie/loss data with a known win ratio: the interval should contain it ~95% of the time
    rng = np.random.default_rng(0)
    p_win, p_tie = 0.55, 0.2
    truth = p_win + 0.5 * p_tie
    sims, hits = 300, 0
    for s in range(sims):
        x = rng.choice([1.0, 0.5, 0.0], size=120, p=[p_win, p_tie, 1 - p_win - p_tie])
        lo, hi = stats.bootstrap_ci(x, n_boot=1000, seed=s)
        hits += lo <= truth <= hi
    assert 0.90 <= hits / sims <= 0.99


def test_sign_test_false_positive_rate_under_the_null():
    rng = np.random.default_rng(5)
    rejections = sum(stats.sign_test(rng.choice([1.0, 0.5, 0.0], size=60)) < 0.05 for _ in range(400))
    assert rejections / 400 <= 0.07  # exact test: at most ~5% (conservative for discrete counts)


def test_summarize_wins_counts():
    s = stats.summarize_wins([1, 1, 1, 0.5, 0], n_boot=500)
    assert (s.n, s.wins, s.ties, s.losses) == (5, 3, 1, 1)
    assert s.win_ratio == pytest.approx(0.7)
    assert s.ci_low <= 0.7 <= s.ci_high
    assert s.p_value == pytest.approx(stats.sign_test([1, 1, 1, 0]))
    assert set(s.to_dict()) >= {"win_ratio", "ci_low", "ci_high", "p_value"}


def test_accuracy_and_position_consistency():
    assert stats.accuracy([True, False, True, True]) == 0.75
    assert stats.position_consistent("A", "B") and stats.position_consistent("B", "A")
    assert not stats.position_consistent("A", "A")
    assert not stats.position_consistent(None, "B")
    assert stats.position_consistency_rate([("A", "B"), ("A", "A"), ("B", "A"), (None, None)]) == 0.5
    acc = stats.summarize_accuracy([True, True, False, True], n_boot=200)
    assert acc.n == 4 and acc.accuracy == 0.75


def _item(dist, cat, value):
    return SimpleNamespace(distribution=dist, category=cat, value=value)


def test_breakdown_columns_follow_the_paper_layout():
    items = [
        _item("id", "material_synthesis", 1),
        _item("id", "conceptual_reasoning", 0),
        _item("id", "constraint_reasoning", 1),
        _item("ood", "perspective_shift", 0),
        _item("ood", "semantic_edit", 1),
        _item("ood", "attribute_reasoning", 1),
    ]
    b = stats.breakdown(items)
    assert list(b) == list(stats.COLUMNS)
    assert [x.value for x in b["total"]] == [1, 0, 1, 0, 1, 1]
    assert len(b["id_overall"]) == 3 and len(b["ood_overall"]) == 3
    assert [x.value for x in b["id_simple"]] == [1]
    assert [x.value for x in b["id_hard"]] == [0, 1]
    assert [x.value for x in b["ood_simple"]] == [0, 1]
    assert [x.value for x in b["ood_hard"]] == [1]
    table = stats.breakdown_table(items, lambda g: stats.win_ratio(x.value for x in g))
    assert table["total"] == pytest.approx(4 / 6)
    assert table["ood_simple"] == 0.5


def test_breakdown_empty_column_is_none_and_bad_labels_raise():
    table = stats.breakdown_table([_item("id", "material_synthesis", 1)], len)
    assert table["id_simple"] == 1 and table["ood_overall"] is None
    with pytest.raises(ValueError, match="unknown category"):
        stats.breakdown([_item("id", "cubism", 1)])
    with pytest.raises(ValueError, match="unknown distribution"):
        stats.breakdown([_item("mars", "semantic_edit", 1)])
