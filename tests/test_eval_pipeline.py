"""Tier 2: the Table 1–3 evaluations wired through the backend protocol with stubs (no model, no world)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from seer.backends.base import BackendError, Completion, write_backend_meta
from seer.data import DataError, Quadruplet, Sample, load_image, save_image, write_jsonl
from seer.eval import common, evaluator, failure_modes, win_ratio
from seer.eval.judge import JudgeError

SIZE = (8, 8)


def _img(level: int) -> np.ndarray:
    return np.full((*SIZE, 3), level, np.uint8)


class StubBackend:
    """Evaluator: answers by brightness (``mode="bright"``) or always "A". Policy: appends "ice" to the prompt.
    Generator: a bright image when the prompt says "ice", else a dark one."""

    kind = "stub"
    image_size = SIZE

    def __init__(self, mode: str = "bright"):
        self.mode = mode

    def generate_text(self, contexts, n, sampling, seed=None):
        out = []
        for c in contexts:
            if c.images:
                a, b = (float(im.mean()) for im in c.images)
                v = "A" if self.mode == "always_a" or a > b else "B"
                text = f"<think> look </think> <answer> {v} </answer>" if self.mode != "garbage" else "hmm"
            else:
                prompt = c.text.split("prompt : ")[1].split(" .")[0]
                text = f"<think> ice is cold </think> <reprompt> an ice {prompt.removeprefix('a ')} </reprompt>"
            out.append([Completion([1], text, [0.0], False) for _ in range(n)])
        return out

    def generate_images(self, prompts, seeds):
        return [_img(200 if "ice" in p.split() else 40) for p in prompts]


class StubJudge:
    name = "stub"
    image_size = SIZE

    def assess(self, sample, image):
        ok = float(image.mean()) > 128
        return SimpleNamespace(satisfied=ok, subject_kept=True, off_target=False, compliance=float(ok),
                               consistency=1.0, quality=1.0, attributes={})

    def compare(self, sample, a, b):
        da, db = float(a.mean()), float(b.mean())
        return 0.5 if da == db else float(da > db)


CATS = ["material_synthesis", "attribute_reasoning", "perspective_shift", "constraint_reasoning"]


def _samples():
    return [Sample(f"t{i}", "make it look cold", f"a thing{i}", CATS[i % 4], "test", ("id", "ood")[i // 4 % 2])
            for i in range(8)]


def _quads(tmp_path):
    quads = []
    for i in range(8):
        save_image(tmp_path / f"img/q{i}-pos.png", _img(220))
        save_image(tmp_path / f"img/q{i}-neg.png", _img(30))
        quads.append(Quadruplet(f"q{i}", 2, "carve it out of ice", "a cat", CATS[i % 4], f"img/q{i}-pos.png",
                                f"img/q{i}-neg.png", "test", ("id", "ood")[i // 4]))
    write_jsonl(tmp_path / "quadruplets_test.jsonl", quads)
    return tmp_path / "quadruplets_test.jsonl"


def test_table1_accuracy_and_position_consistency(tmp_path):
    path = _quads(tmp_path)
    good = evaluator.evaluate_evaluator(StubBackend("bright"), path, key="seer_eval", label="SEER-Eval", n_boot=200,
                                        judgments_path=tmp_path / "j.jsonl")
    assert good["accuracy"]["total"]["accuracy"] == 1.0 and good["accuracy"]["total"]["n"] == 16
    assert good["position_consistency"]["total"] == 1.0 and good["unparseable"] == 0.0
    assert good["accuracy"]["ood_hard"]["n"] == 4
    assert len((tmp_path / "j.jsonl").read_text().splitlines()) == 8
    biased = evaluator.evaluate_evaluator(StubBackend("always_a"), path, key="zero_shot", label="Zero-shot",
                                          n_boot=200)
    assert biased["accuracy"]["total"]["accuracy"] == 0.5  # both orders: always-A is right exactly half the time
    assert biased["position_consistency"]["total"] == 0.0 and biased["answers_a"] == 1.0
    garbage = evaluator.evaluate_evaluator(StubBackend("garbage"), path, key="z", label="z", n_boot=200)
    assert garbage["accuracy"]["total"]["accuracy"] == 0.0 and garbage["unparseable"] == 1.0


def test_table1_bad_inputs(tmp_path):
    path = _quads(tmp_path)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[3]["category"] = "cubism"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:4: field 'category' is 'cubism'"):
        evaluator.evaluate_evaluator(StubBackend(), bad, key="k", label="k")
    wide = StubBackend()
    wide.image_size = (16, 16)
    with pytest.raises(DataError, match="expected 16x16"):
        evaluator.evaluate_evaluator(wide, path, key="k", label="k")


def test_checkpoints_of_another_kind_or_vocabulary_are_refused(tmp_path):
    write_backend_meta(tmp_path / "base", "token_umm", vocab_size=100, num_image_codes=32)
    write_backend_meta(tmp_path / "same" / "model", "token_umm", vocab_size=100, num_image_codes=32)
    write_backend_meta(tmp_path / "vocab", "token_umm", vocab_size=120, num_image_codes=32)
    write_backend_meta(tmp_path / "kind", "janus", vocab_size=100, num_image_codes=32)
    common.check_compatible(tmp_path / "base", tmp_path / "same")  # a run dir resolves to its model/
    with pytest.raises(BackendError, match=r"vocab/backend.json: vocab_size is 120 .* has 100"):
        common.check_compatible(tmp_path / "base", tmp_path / "vocab")
    with pytest.raises(BackendError, match="kind is 'janus'"):
        common.check_compatible(tmp_path / "base", tmp_path / "kind")
    with pytest.raises(BackendError, match="not a seer checkpoint"):
        common.resolve_model_dir(tmp_path)


def _systems(tmp_path, samples):
    backend = StubBackend()
    seer = win_ratio.build_system("seer", "SEER", samples, win_ratio.policy_reprompts(backend, samples), backend,
                                  tmp_path / "systems/seer")
    naive = win_ratio.build_system("naive", "Naive concatenation", samples, win_ratio.naive_reprompts(samples),
                                   backend, tmp_path / "systems/naive")
    return seer, naive


def test_win_ratio_rows_breakdown_and_words(tmp_path):
    samples = _samples()
    seer, naive = _systems(tmp_path, samples)
    assert seer.outputs["t0"].prompt_used == "an ice thing0" and seer.format_failures == 0
    assert seer.outputs["t3"].seed == naive.outputs["t3"].seed  # same seed per case for every system
    rows, raw = win_ratio.judge_scores_table(StubJudge(), samples, seer, [naive, seer], n_boot=200)
    assert raw["naive"] == [1.0] * 8 and raw["seer"] == [0.5] * 8
    assert rows[0]["cells"]["total"]["win_ratio"] == 1.0
    assert rows[0]["cells"]["total"]["p_value"] == pytest.approx(2 * 0.5**8)
    assert rows[0]["cells"]["id_simple"]["n"] == 2 and rows[0]["cells"]["ood_hard"]["n"] == 2
    assert rows[1]["cells"]["total"]["win_ratio"] == 0.5 and rows[1]["cells"]["total"]["p_value"] == 1.0
    assert rows[0]["avg_words"] == pytest.approx(6.0)  # "make it look cold a thingN"
    assert seer.avg_words() == pytest.approx(3.0)
    again = win_ratio.load_system(tmp_path / "systems/seer")
    assert again.outputs == seer.outputs


def test_failure_modes_of_a_system(tmp_path):
    samples = _samples()
    seer, naive = _systems(tmp_path, samples)
    assert {c.mode for c in failure_modes.classify_system(StubJudge(), samples, seer)} == {"success"}
    # the naive prompt parrots the instruction and fails: Type I
    assert {c.mode for c in failure_modes.classify_system(StubJudge(), samples, naive)} == {"type_i"}


def test_judge_that_cannot_read_the_images(tmp_path):
    samples = _samples()
    seer, naive = _systems(tmp_path, samples)
    judge = StubJudge()
    judge.image_size = (32, 32)
    with pytest.raises(JudgeError, match=r"case 't0'.*reads 32x32 images, got 8x8"):
        win_ratio.judge_pairs(judge, samples, seer, naive)


def test_export_pairs_schema(tmp_path):
    samples = _samples()
    seer, naive = _systems(tmp_path, samples)
    path = win_ratio.export_pairs(tmp_path / "export/pairs.jsonl", samples, seer, [naive])
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 8
    assert set(lines[0]) == {"case_id", "instruction", "prompt", "category", "distribution", "system", "opponent",
                             "image_system", "image_opponent"}
    assert lines[0]["system"] == "seer" and lines[0]["opponent"] == "naive"
    assert load_image(path.parent / lines[0]["image_system"]).mean() == 200
    assert load_image(path.parent / lines[0]["image_opponent"]).mean() == 40
