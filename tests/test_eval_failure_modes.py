"""Failure-mode classification (App. A.4.3) on hand-made assessments."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from seer.eval import failure_modes as fm


def _assessment(satisfied=False, subject_kept=True, off_target=False):
    return SimpleNamespace(satisfied=satisfied, subject_kept=subject_kept, off_target=off_target,
                           compliance=1.0 if satisfied else 0.0, consistency=1.0, quality=1.0, attributes={})


INSTR = "make the object look scary , yet undeniably cute"


def test_content_words_drop_function_words_and_command_verbs():
    assert fm.content_words(INSTR) == ["scary", "undeniably", "cute"]
    assert fm.content_words("Transform it so it is carved entirely out of ice.") == ["carved", "out", "ice"]


def test_overlap_and_lazy_concatenation():
    assert fm.instruction_overlap(INSTR, "a cat , scary cute") == pytest.approx(2 / 3)
    assert fm.is_lazy_concatenation(INSTR, "a cat", "a cat , make it scary yet cute")
    assert not fm.is_lazy_concatenation(INSTR, "a cat", "a small pink cat at night")
    assert fm.instruction_overlap("make it", "a cat") == 0.0  # an instruction with no content words


@pytest.mark.parametrize(
    ("reprompt", "assessment", "mode"),
    [
        (None, _assessment(), "format"),
        ("a small pink cat at night", _assessment(satisfied=True), "success"),
        ("a cat , make it scary yet cute", _assessment(satisfied=True), "success"),  # lazy but it worked
        ("a cat , make it scary yet cute", _assessment(), "type_i"),
        ("a cat , make it scary yet cute", _assessment(off_target=True), "type_i"),  # cause first: it parroted
        ("a large red cat with a hat", _assessment(off_target=True), "type_ii"),
        ("a cat", _assessment(), "type_iii"),
        ("a dog on grass", _assessment(subject_kept=False), "other"),
        ("a dog on grass", _assessment(satisfied=True, subject_kept=False), "other"),  # target met, subject lost
    ],
)
def test_classify(reprompt, assessment, mode):
    assert fm.classify(INSTR, "a cat", reprompt, assessment) == mode


def test_failure_mode_table_rates_sum_to_one_per_subset():
    items = [
        fm.Classified("1", "material_synthesis", "id", "success"),
        fm.Classified("2", "material_synthesis", "id", "type_iii"),
        fm.Classified("3", "conceptual_reasoning", "ood", "type_iii"),
        fm.Classified("4", "constraint_reasoning", "ood", "type_i"),
    ]
    t = fm.failure_mode_table(items)
    assert t["total"]["n"] == 4 and t["total"]["type_iii"] == 0.5
    assert t["simple"]["success"] == 0.5 and t["hard"]["type_i"] == 0.5
    for subset in t.values():
        assert sum(subset[m] for m in fm.MODES) == pytest.approx(1.0)
