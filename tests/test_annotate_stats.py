"""Statistics of the human study on hand-made votes: Fleiss' kappa, position bias, scores, and the results table."""

from __future__ import annotations

import json

import pytest

from seer.annotate import study as st
from seer.annotate.demo import write_demo_pairs
from seer.annotate.results import compute_results, load_comparison, to_markdown
from seer.annotate.stats import fleiss_kappa, position_bias
from seer.data import DataError, difficulty


def _ratings(table):
    return [[j for j, n in enumerate(row) for _ in range(n)] for row in table]


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971)-style worked example: 10 items, 14 raters, 5 categories → P̄ = 0.378, P_e = 0.213, κ = 0.210
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]  # fmt: skip
    k = fleiss_kappa(_ratings(table))
    assert k["n_items"] == 10 and k["n_ratings"] == 140
    assert k["observed_agreement"] == pytest.approx(0.378, abs=5e-4)
    assert k["chance_agreement"] == pytest.approx(0.213, abs=5e-4)
    assert k["kappa"] == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_limits():
    assert fleiss_kappa([[1, 1, 1], [0, 0, 0], [0.5, 0.5, 0.5]])["kappa"] == pytest.approx(1.0)
    assert fleiss_kappa([[1, 1], [1, 1]])["kappa"] is None  # one category only: chance agreement is 1
    # two raters always disagreeing on a balanced binary label: agreement below chance
    assert fleiss_kappa([[0, 1], [1, 0], [0, 1], [1, 0]])["kappa"] == pytest.approx(-1.0)
    # items with a single rating carry no agreement information
    assert fleiss_kappa([[1], [0]])["n_items"] == 0
    assert fleiss_kappa([[1], [0]])["kappa"] is None


def test_fleiss_kappa_variable_raters_matches_constant_case():
    a = fleiss_kappa([[0, 0, 1], [1, 1, 1], [0, 1, 1]])
    b = fleiss_kappa([[0, 0, 1], [1, 1, 1], [0, 1, 1], [0]])  # the single-rated item is ignored
    assert a == b


def test_position_bias():
    pb = position_bias(["A"] * 10 + ["tie"] * 3)
    assert (pb["left"], pb["right"], pb["ties"]) == (10, 0, 3)
    assert pb["left_rate"] == 1.0
    assert pb["p_value"] == pytest.approx(2 / 2**10)
    even = position_bias(["A", "B"] * 5)
    assert even["left_rate"] == 0.5 and even["p_value"] == pytest.approx(1.0)
    assert position_bias(["tie"])["left_rate"] is None
    with pytest.raises(ValueError, match="'A', 'B' or 'tie'"):
        position_bias(["left"])


@pytest.mark.parametrize(
    ("choice", "system_left", "score"),
    [("A", True, 1.0), ("B", True, 0.0), ("A", False, 0.0), ("B", False, 1.0), ("tie", True, 0.5), ("tie", False, 0.5)],
)
def test_vote_score(choice, system_left, score):
    assert st.vote_score(choice, system_left) == score


def _study(tmp_path, annotators=("ann-1", "ann-2"), n_cases=12):
    pairs = write_demo_pairs(tmp_path / "pairs", n_cases=n_cases)
    return st.create_study(pairs, tmp_path / "study", list(annotators), seed=3)


def _vote_for(conn, name, prefer):
    """Vote every pair of one annotator: prefer(system, opponent, system_left) → 'A' | 'B' | 'tie'."""
    aid = conn.execute("SELECT id FROM annotators WHERE name = ?", (name,)).fetchone()[0]
    rows = conn.execute(
        "SELECT a.position, a.system_left, p.system, p.opponent FROM assignments a JOIN pairs p ON p.id = a.pair_id "
        "WHERE a.annotator_id = ?",
        (aid,),
    ).fetchall()
    for r in rows:
        st.record_vote(conn, aid, r["position"], prefer(r["system"], r["opponent"], bool(r["system_left"])))


def test_results_on_hand_made_votes(tmp_path):
    study = _study(tmp_path)
    conn = st.connect(study)
    # ann-1 always picks the system's image; ann-2 picks the system against "naive" and ties against "base_cot"
    _vote_for(conn, "ann-1", lambda s, o, left: "A" if left else "B")
    _vote_for(conn, "ann-2", lambda s, o, left: ("A" if left else "B") if o == "naive" else "tie")
    conn.close()
    res = compute_results(study, n_boot=500, seed=0)
    rows = {r["opponent"]: r for r in res["rows"]}
    assert list(rows) == ["naive", "base_cot"]  # pairs-file order
    naive, cot = rows["naive"]["cells"], rows["base_cot"]["cells"]
    for col in res["columns"]:
        assert naive[col]["win_ratio"] == 1.0
        assert cot[col]["win_ratio"] == pytest.approx(0.75)
    assert naive["total"]["n_cases"] == 12 and naive["total"]["n_votes"] == 24
    assert (cot["total"]["vote_wins"], cot["total"]["vote_ties"], cot["total"]["vote_losses"]) == (12, 12, 0)
    assert naive["total"]["p_value"] == pytest.approx(2 / 2**12)  # 12 of 12 cases won, two-sided sign test
    assert naive["total"]["ci_low"] == naive["total"]["ci_high"] == 1.0
    # the breakdown follows distribution and difficulty (demo: cases 0–5 ID, 6–11 OOD; 3 simple + 3 hard each)
    for col in ("id_simple", "id_hard", "ood_simple", "ood_hard"):
        assert naive[col]["n_cases"] == 3
    assert naive["id_overall"]["n_cases"] == naive["ood_overall"]["n_cases"] == 6
    assert rows["naive"]["agreement"]["kappa"] is None  # everyone chose the system: agreement undefined
    assert res["summary"]["coverage"] == 1.0
    md = to_markdown(res)
    assert "| vs. naive | human | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 |" in md
    assert "| vs. base_cot | human | 0.75 |" in md
    json.dumps(res)  # serialisable as it is


def test_position_bias_and_balanced_sides(tmp_path):
    study = _study(tmp_path)
    conn = st.connect(study)
    _vote_for(conn, "ann-1", lambda s, o, left: "A")  # always the left image
    _vote_for(conn, "ann-2", lambda s, o, left: "B")  # always the right image
    conn.close()
    res = compute_results(study, n_boot=200)
    ann = {a["name"]: a for a in res["annotators"]}
    assert ann["ann-1"]["position_bias"]["left_rate"] == 1.0
    assert ann["ann-2"]["position_bias"]["left_rate"] == 0.0
    # sides are balanced within each annotator, so a position-only voter scores exactly 0.5 for the system
    assert ann["ann-1"]["win_ratio"] == 0.5 and ann["ann-2"]["win_ratio"] == 0.5
    assert res["position_bias"]["system_shown_left_rate"] == 0.5


def test_kappa_partial_agreement(tmp_path):
    study = _study(tmp_path, annotators=("x", "y", "z"), n_cases=6)
    conn = st.connect(study)
    _vote_for(conn, "x", lambda s, o, left: "A" if left else "B")
    _vote_for(conn, "y", lambda s, o, left: "A" if left else "B")
    _vote_for(conn, "z", lambda s, o, left: ("B" if left else "A") if o == "naive" else "tie")
    conn.close()
    res = compute_results(study, n_boot=200)
    scores = []  # the same ratings, by hand: per pair [1, 1, 0] against naive and [1, 1, 0.5] against base_cot
    scores += [[1, 1, 0]] * 6 + [[1, 1, 0.5]] * 6
    assert res["agreement"]["kappa"] == pytest.approx(fleiss_kappa(scores)["kappa"])
    assert res["rows"][0]["cells"]["total"]["win_ratio"] == pytest.approx(2 / 3)


def test_incomplete_study_and_empty_cells(tmp_path):
    study = _study(tmp_path, n_cases=6)  # all ID: the OOD cells are empty
    conn = st.connect(study)
    st.record_vote(conn, 1, 1, "tie")
    conn.close()
    res = compute_results(study, n_boot=100)
    assert res["summary"]["votes"] == 1 and res["summary"]["coverage"] == pytest.approx(1 / 24)
    assert all(r["cells"]["ood_overall"] is None for r in res["rows"])
    assert sum(r["cells"]["total"] is not None for r in res["rows"]) == 1
    assert "–" in to_markdown(res)


def test_oracle_side_by_side(tmp_path):
    study = _study(tmp_path, n_cases=6)
    conn = st.connect(study)
    _vote_for(conn, "ann-1", lambda s, o, left: "A" if left else "B")
    conn.close()
    res = compute_results(study, n_boot=100)
    oracle = tmp_path / "oracle.json"
    oracle.write_text(json.dumps({"rows": [
        {"system": "seer", "opponent": "base_cot", "cells": {"total": {"win_ratio": 0.61}, "id_overall": 0.6}},
        {"opponent": "verbose", "cells": {"total": 0.7}},
    ]}))  # fmt: skip
    other = load_comparison(oracle)
    md = to_markdown(res, other)
    lines = md.splitlines()
    human = lines.index(next(line for line in lines if line.startswith("| vs. base_cot | human")))
    assert lines[human + 1].startswith("| vs. base_cot | oracle | 0.61 | 0.60 | – |")
    assert any(line.startswith("| vs. verbose | oracle | 0.70 |") for line in lines)
    # our own results.json reads back as a comparison too
    (tmp_path / "res.json").write_text(json.dumps(res))
    again = load_comparison(tmp_path / "res.json", source="humans-v1")
    assert again[0]["source"] == "humans-v1" and again[0]["cells"]["total"]["win_ratio"] == 1.0
    # mapping form
    (tmp_path / "map.json").write_text(json.dumps({"naive": {"total": 0.9}}))
    assert load_comparison(tmp_path / "map.json")[0]["cells"]["total"] == {"win_ratio": 0.9}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "expected"),
        ('{"rows": [{"cells": {"total": 0.5}}]}', r"rows\[0\].*'opponent'"),
        ('{"rows": [{"opponent": "x", "cells": {"overall": 0.5}}]}', r"rows\[0\].*no cells"),
    ],
)
def test_oracle_errors(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        load_comparison(path)


def test_demo_pairs_cover_every_cell(tmp_path):
    from seer.annotate.pairs import load_pairs

    pairs = [p for _, p in load_pairs(write_demo_pairs(tmp_path))]
    cells = {(p.distribution, difficulty(p.category)) for p in pairs}
    assert cells == {("id", "simple"), ("id", "hard"), ("ood", "simple"), ("ood", "hard")}


def test_oracle_in_seer_eval_shapes(tmp_path):
    """`seer eval win-ratio`'s table.json and `seer reproduce`'s report.json name the opponent in 'key'."""
    cell = {
        "n": 12,
        "wins": 9,
        "ties": 1,
        "losses": 2,
        "win_ratio": 0.79,
        "ci_low": 0.6,
        "ci_high": 0.9,
        "p_value": 0.06,
    }
    row = {"key": "naive", "label": "vs. naive", "cells": {"total": cell, "id_overall": cell, "ood_hard": None}}
    (tmp_path / "table.json").write_text(json.dumps({"rows": [row], "seer_avg_words": 12.0}))
    (tmp_path / "report.json").write_text(json.dumps({
        "table2": {"rows": [{**row, "key": "verbose_expander"}, row]},
        "table3": {"rows": [row, {**row, "key": "base_cot"}]},
    }))  # fmt: skip
    (got,) = load_comparison(tmp_path / "table.json")
    assert got["opponent"] == "naive" and got["source"] == "oracle"
    assert got["cells"]["total"] == {"win_ratio": 0.79} and got["cells"]["ood_hard"] is None
    names = [r["opponent"] for r in load_comparison(tmp_path / "report.json")]
    assert names == ["naive", "base_cot", "verbose_expander"]  # table 3 then table 2, each opponent once


def test_results_cli_writes_markdown_and_json(tmp_path, capsys):
    from seer.cli import main

    study = _study(tmp_path, n_cases=6)
    conn = st.connect(study)
    _vote_for(conn, "ann-1", lambda s, o, left: "A" if left else "B")
    conn.close()
    (tmp_path / "oracle.json").write_text(json.dumps({"naive": {"total": 0.5}}))
    out = tmp_path / "res"
    code = main(["annotate", "results", str(study), "--oracle", str(tmp_path / "oracle.json"), "--out", str(out),
                 "--n-boot", "200"])  # fmt: skip
    assert code == 0
    md = (out / "results.md").read_text()
    assert md in capsys.readouterr().out
    assert "| vs. naive | oracle | 0.50 |" in md and "| vs. naive | human | 1.00 |" in md
    res = json.loads((out / "results.json").read_text())
    assert res["rows"][0]["cells"]["total"]["win_ratio"] == 1.0 and res["comparison"]["rows"][0]["opponent"] == "naive"
    assert main(["annotate", "results", str(tmp_path / "nope")]) == 2
    assert "not a study" in capsys.readouterr().err
