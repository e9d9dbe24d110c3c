"""seer's diagnostics beside the win ratios: each system's images judged on their own, and the words policies add."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from seer.data import Sample, save_image
from seer.eval import report as R
from seer.eval import win_ratio as W

SAMPLES = [Sample("t0", "make it look cold", "a cat", "material_synthesis", "test"),
           Sample("t1", "make it look scary", "a red dog", "constraint_reasoning", "test"),
           Sample("t2", "make it look cold", "a cup", "material_synthesis", "test"),
           Sample("t3", "make it memorable", "a tree", "conceptual_reasoning", "test")]


def _system(tmp_path, name, prompts, brightness):
    outputs = {}
    for s, p, b in zip(SAMPLES, prompts, brightness, strict=True):
        save_image(tmp_path / name / f"{s.id}.png", np.full((8, 8, 3), b, np.uint8))
        outputs[s.id] = W.SystemOutput(s.id, p, p, p, 0, f"{s.id}.png")
    return W.System(name, name.upper(), outputs, tmp_path / name)


class Judge:
    """Satisfied when bright; the subject kept unless the image is pure black."""

    name = "toy"

    def assess(self, sample, image):
        m = float(image.mean())
        return SimpleNamespace(satisfied=m > 128, subject_kept=m > 0)


def test_judged_rates_read_each_image_alone_and_split_by_difficulty(tmp_path):
    system = _system(tmp_path, "seer", ["a"] * 4, [200, 0, 50, 200])
    r = W.judged_rates(Judge(), SAMPLES, system)
    assert r["total"] == {"n": 4, "satisfied": 0.5, "subject_kept": 0.75, "success": 0.5}
    assert r["simple"] == {"n": 2, "satisfied": 0.5, "subject_kept": 1.0, "success": 0.5}
    assert r["hard"] == {"n": 2, "satisfied": 0.5, "subject_kept": 0.5, "success": 0.5}


def test_added_words_are_those_in_neither_prompt_nor_instruction(tmp_path):
    prompts = ["a ice cat , night", "a red dog , night", "a cold cup , night", "a gold tree"]
    shares = W.added_word_shares(SAMPLES, _system(tmp_path, "seer", prompts, [0] * 4))
    # "cold" is in t2's instruction, "red" in t1's prompt: neither counts there
    assert shares == {"night": 0.75, "gold": 0.25, "ice": 0.25}
    assert list(shares) == ["night", "gold", "ice"]  # by share, then alphabetically


def test_report_names_a_word_added_everywhere():
    report = {"meta": {}, "added_words": {"seer_top": ["night", "gold"], "rows": [
        {"key": "seer", "label": "SEER", "top": [["night", 0.98], ["gold", 0.3]], "seer_top_shares": [0.98, 0.3]},
        {"key": "base_cot", "label": "Base (CoT)", "top": [["wood", 0.4]], "seer_top_shares": [0.14, 0.05]}]},
        "judged": {"seer": {"label": "SEER", "total": {"n": 4, "satisfied": 0.5, "subject_kept": 0.75,
                                                        "success": 0.5}}}}
    md = R.render_report(report)
    assert "## Words the policies add" in md and "| SEER | night 0.98, gold 0.30 | 0.98 | 0.30 |" in md
    assert "## Each system's images on their own" in md and "| SEER | 4 | 0.50 (– / –) | 0.75 | 0.50 (– / –) |" in md
    assert any("“night” into 0.98 of its test prompts (Base (CoT) 0.14)" in f for f in R.findings(report))
    report["added_words"]["rows"][0]["top"][0][1] = 0.5
    assert not any("converged on one change" in f for f in R.findings(report))
