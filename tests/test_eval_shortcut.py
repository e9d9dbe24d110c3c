"""The evaluator shortcut probe: pairs built from test quadruplets, labelled by a judge, scored per kind."""

from __future__ import annotations

import numpy as np
import stub_backend
from stub_backend import SIZE

from seer.data import Quadruplet, save_image
from seer.eval import report as R
from seer.eval import shortcut as SC

TARGET = {"make it cold": 200.0, "make it warm": 160.0}  # the brightness an image that satisfies each has


class InstructionJudge:
    """Reads the instruction: an image satisfies it when its brightness is the instruction's target."""

    name = "instruction"
    image_size = SIZE

    def compare(self, sample, a, b):
        ok_a, ok_b = (abs(float(x.mean()) - TARGET[sample.instruction]) < 5 for x in (a, b))
        return 0.5 if ok_a == ok_b else float(ok_a)


def _data(root):
    for name, v in (("cold", 200), ("warm", 160), ("plain", 40)):
        save_image(root / f"{name}.png", np.full((*SIZE, 3), v, np.uint8))
    return [
        Quadruplet("q1", 2, "make it cold", "a cat", "material_synthesis", "cold.png", "plain.png", "test"),
        Quadruplet("q2", 2, "make it warm", "a cat", "material_synthesis", "warm.png", "plain.png", "test"),
        Quadruplet("q3", 2, "make it cold", "a dog", "material_synthesis", "cold.png", "plain.png", "test"),
        Quadruplet("p1", 1, "", "a cat", "material_synthesis", "cold.png", "plain.png", "test"),
    ]


def test_pairs_need_a_partner_with_another_instruction_and_the_same_subject(tmp_path):
    pairs = SC.probe_pairs(_data(tmp_path), tmp_path, InstructionJudge(), lambda p: p.split()[-1])
    # q3 (a dog) has no partner and the phase-1 quadruplet is not probed: two pairs for each of q1 and q2
    assert [(p.kind, p.quad.id, p.quad.image_chosen, p.quad.image_rejected, p.preference) for p in pairs] == [
        ("other_edit", "q1-other_edit", "cold.png", "warm.png", 1.0),
        ("edit_vs_plain", "q1-edit_vs_plain", "warm.png", "plain.png", 0.5),
        ("other_edit", "q2-other_edit", "warm.png", "cold.png", 1.0),
        ("edit_vs_plain", "q2-edit_vs_plain", "cold.png", "plain.png", 0.5),
    ]
    assert SC.judge_summary(pairs) == {
        "other_edit": {"pairs": 2, "judge_prefers_first": 2, "ties": 0, "judge_prefers_second": 0},
        "edit_vs_plain": {"pairs": 2, "judge_prefers_first": 0, "ties": 2, "judge_prefers_second": 0}}


def test_an_evaluator_that_prefers_change_is_caught(tmp_path):
    """The stub judge names the brighter image, and every edit here is brighter than the plain image: it is right
    on one of the two-edit pairs only (the colder one is brighter) and always picks the edit on the ties."""
    pairs = SC.probe_pairs(_data(tmp_path), tmp_path, InstructionJudge(), lambda p: p.split()[-1])
    res = SC.probe_evaluator(stub_backend.judge(prefer_brighter=True), pairs, tmp_path, max_new_tokens=12)
    assert res["other_edit"] == {"accuracy_where_judge_decides": 0.5, "n_decided_judgements": 4,
                                 "picks_first_on_ties": None, "n_tie_judgements": 0}
    assert res["edit_vs_plain"]["picks_first_on_ties"] == 1.0 and res["edit_vs_plain"]["n_tie_judgements"] == 4
    darker = SC.probe_evaluator(stub_backend.judge(prefer_brighter=False), pairs, tmp_path, max_new_tokens=12)
    assert darker["edit_vs_plain"]["picks_first_on_ties"] == 0.0


def test_score_splits_decided_pairs_from_ties():
    q = Quadruplet("q", 2, "make it cold", "a cat", "material_synthesis", "a.png", "b.png")
    pairs = [SC.ProbePair("other_edit", q, 1.0), SC.ProbePair("other_edit", q, 0.0),
             SC.ProbePair("edit_vs_plain", q, 0.5)]
    res = SC.score_probe(pairs, [(True, True), (True, False), (True, False)])
    assert res["other_edit"]["accuracy_where_judge_decides"] == 0.75  # right twice on the first, once on the second
    assert res["edit_vs_plain"]["picks_first_on_ties"] == 0.5
    assert SC.score_probe([], [])["other_edit"]["accuracy_where_judge_decides"] is None


def test_report_shows_the_probe_and_reads_it():
    def row(key, two, ties):
        return {"key": key, "label": key, "other_edit": {"accuracy_where_judge_decides": two,
                                                         "n_decided_judgements": 180},
                "edit_vs_plain": {"picks_first_on_ties": ties, "n_tie_judgements": 100}}

    report = {"meta": {}, "shortcut": {"judge": {"other_edit": {"pairs": 91, "judge_prefers_first": 90}},
                                       "rows": [row("zero_shot", 0.54, 0.43), row("seer_eval", 0.40, 0.955)]}}
    md = R.render_report(report)
    assert "## Evaluator shortcut probe" in md and "| seer_eval | 0.40 (180) | 0.95 (100)" in md
    assert any("prefer the edited image, not to read the instruction" in f for f in R.findings(report))
    report["shortcut"]["rows"][1] = row("seer_eval", 0.90, 0.5)
    assert any("it reads the instruction" in f for f in R.findings(report))
    report["shortcut"]["rows"][1] = row("seer_eval", 0.52, 0.56)
    assert any("at chance on both" in f for f in R.findings(report))
    report["shortcut"]["rows"][1] = row("seer_eval", 0.70, 0.70)
    assert any("partly reading the instruction" in f for f in R.findings(report))
