"""`seer reproduce`: resumable steps, refusal to clobber, and a reduced end-to-end smoke on a tiny random model."""

from __future__ import annotations

import json
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from seer.cli import UserError, main
from seer.data import Quadruplet, Sample, load_image, save_image, write_jsonl
from seer.eval import reproduce as R
from seer.eval.common import balanced_subset


def _counting_steps(monkeypatch, calls):
    def make(name):
        def fn(rep):
            calls.append(name)
            return {"step": name}
        return fn

    monkeypatch.setattr(R, "STEPS", tuple((n, make(n)) for n in ("a", "b", "c")))
    monkeypatch.setattr(R, "build_report", lambda rep: {"meta": {"steps": rep.steps}})


def test_steps_leave_markers_and_resume_skips_them(tmp_path, monkeypatch):
    calls = []
    _counting_steps(monkeypatch, calls)
    out = tmp_path / "rep"
    R.reproduce(out, quick=True, only=("a", "b"), log=lambda m: None)
    assert calls == ["a", "b"]
    assert json.loads((out / "steps/a.json").read_text())["result"] == {"step": "a"}
    with pytest.raises(UserError, match="--resume"):
        R.reproduce(out, quick=True, log=lambda m: None)
    R.reproduce(out, quick=True, resume=True, log=lambda m: None)
    assert calls == ["a", "b", "c"]  # a and b skipped, c ran
    report = json.loads((out / "report.json").read_text())
    assert [s["status"] for s in report["meta"]["steps"]] == ["done (earlier run)", "done (earlier run)", "done"]
    with pytest.raises(UserError, match="other settings"):
        R.reproduce(out, quick=False, resume=True, log=lambda m: None)
    R.reproduce(out, quick=False, overwrite=True, log=lambda m: None)
    assert calls[-3:] == ["a", "b", "c"]


def test_a_run_from_before_a_protocol_field_existed_resumes(tmp_path, monkeypatch):
    calls = []
    _counting_steps(monkeypatch, calls)
    out = tmp_path / "rep"
    R.reproduce(out, quick=True, only=("a",), log=lambda m: None)
    settings = json.loads((out / "reproduce.json").read_text())
    del settings["protocol"]["wrong_edit_negatives"]  # written by a seer without that field
    (out / "reproduce.json").write_text(json.dumps(settings))
    R.reproduce(out, quick=True, resume=True, log=lambda m: None)
    assert calls == ["a", "b", "c"]
    with pytest.raises(UserError, match="other settings"):  # but a field that differs still refuses
        R.reproduce(out, quick=True, resume=True, wrong_edit_negatives=True, log=lambda m: None)


def test_cli_reports_a_clobber_without_traceback(tmp_path, monkeypatch, capsys):
    _counting_steps(monkeypatch, [])
    out = tmp_path / "rep"
    assert main(["reproduce", "--quick", "--out", str(out)]) == 0
    assert main(["reproduce", "--quick", "--out", str(out)]) == 2
    assert "already there; pass --resume" in capsys.readouterr().err


def test_data_options_reach_the_data_builder_and_the_settings(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("seer.world.build_data.build_data", lambda cfg: seen.append(cfg) or {"n": 0})
    monkeypatch.setattr(R, "STEPS", (("data", R.step_data),))
    monkeypatch.setattr(R, "build_report", lambda rep: {"meta": {"steps": rep.steps, "protocol": {}}})
    out = tmp_path / "rep"
    assert main(["reproduce", "--quick", "--wrong-edit-negatives", "--out", str(out)]) == 0
    assert [c.wrong_edit_negatives for c in seen] == [True]
    assert json.loads((out / "reproduce.json").read_text())["protocol"]["wrong_edit_negatives"] is True
    with pytest.raises(UserError, match="other settings"):  # resuming without the flag would mix two data sets
        R.reproduce(out, quick=True, resume=True, log=lambda m: None)
    R.reproduce(tmp_path / "plain", quick=True, log=lambda m: None)
    assert [c.wrong_edit_negatives for c in seen] == [True, False]
    assert main(["reproduce", "--quick", "--plain-wins-pairs", "--out", str(tmp_path / "pw")]) == 0
    assert [(c.wrong_edit_negatives, c.plain_wins_pairs) for c in seen] == [(True, False), (False, False),
                                                                             (False, True)]


def test_limit_keeps_every_cell():
    items = [SimpleNamespace(distribution=d, category=c, i=i) for i, (d, c) in enumerate(
        [(d, c) for d in ("id", "ood") for c in ("material_synthesis", "attribute_reasoning") for _ in range(5)])]
    kept = balanced_subset(items, 8)
    assert len(kept) == 8
    assert {(x.distribution, x.category) for x in kept} == {(x.distribution, x.category) for x in items}
    assert balanced_subset(items, 0) == items


# -- a reduced end-to-end run on a tiny random model ----------------------------------------------------------------
CATS = ("material_synthesis", "attribute_reasoning", "perspective_shift", "constraint_reasoning")


def _write_tiny_data(data_dir, size=(16, 16)):
    rng = np.random.default_rng(0)

    def img(name):
        save_image(data_dir / "images" / name, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        return f"images/{name}"

    train, quads_train, test, quads_test = [], [], [], []
    for i in range(8):
        cat = CATS[i % 4]
        train.append(Sample(f"s{i}", "make it look cold", "a cat", cat, "train", "id", img(f"s{i}.png")))
        quads_train.append(Quadruplet(f"q1-{i}", 1, "", "a cat", cat, img(f"q1-{i}a.png"), img(f"q1-{i}b.png")))
        quads_train.append(Quadruplet(f"q2-{i}", 2, "make it look cold", "a cat", cat, img(f"q2-{i}a.png"),
                                      img(f"q2-{i}b.png")))
        dist = ("id", "ood")[i // 4]
        test.append(Sample(f"t{i}", "make it look cold", "a dog", cat, "test", dist))
        instruction = ("make it look cold", "make it look warm")[i % 2]  # two, so the shortcut probe has pairs
        quads_test.append(Quadruplet(f"qt{i}", 2, instruction, "a dog", cat, img(f"qt{i}a.png"),
                                     img(f"qt{i}b.png"), "test", dist))
    write_jsonl(data_dir / "samples.jsonl", train)
    write_jsonl(data_dir / "quadruplets_train.jsonl", quads_train)
    write_jsonl(data_dir / "samples_test.jsonl", test)
    write_jsonl(data_dir / "quadruplets_test.jsonl", quads_test)
    from seer.eval import shortcut_proof as SP

    proof = []
    for q in quads_test:  # the shortcut-proof set: four kinds per test quadruplet
        for kind, (a, b) in zip(SP.KINDS, ((q.image_chosen, q.image_rejected), (q.image_chosen, img(f"{q.id}o.png")),
                                           (q.image_chosen, img(f"{q.id}w.png")), (q.image_rejected,
                                                                                   img(f"{q.id}l.png"))), strict=True):
            proof.append(Quadruplet(SP.pair_id(kind, q.id), 2, q.instruction, q.prompt, q.category, a, b, "test",
                                    q.distribution))
    write_jsonl(data_dir / SP.PAIRS_FILE, proof)


class BrightnessJudge:
    name = "brightness"

    def assess(self, sample, image):
        ok = float(image.mean()) > 128
        return SimpleNamespace(satisfied=ok, subject_kept=True, off_target=False, compliance=float(ok),
                               consistency=1.0, quality=1.0, attributes={})

    def compare(self, sample, a, b):
        da, db = float(a.mean()), float(b.mean())
        return 0.5 if abs(da - db) < 1 else float(da > db)

    def read_attributes(self, images):
        return [{"subject": "cat"} for _ in images]


@pytest.mark.slow
def test_reproduce_smoke_on_a_tiny_random_model(tmp_path, monkeypatch):
    from seer.backends.token_umm import tiny_random_backend

    base = tmp_path / "base"
    tiny_random_backend(seed=0).save(base)
    fake_data = lambda rep: (_write_tiny_data(rep.data_dir), {"n": 8})[1]  # noqa: E731
    monkeypatch.setattr(R, "STEPS", tuple((n, fake_data if n == "data" else f) for n, f in R.STEPS))
    monkeypatch.setattr(R, "_judge", lambda rep: BrightnessJudge())
    fake = types.ModuleType("seer.world.reprompters")
    fake.VerboseExpander = lambda: SimpleNamespace(name="verbose", reprompt=lambda s: f"{s.naive_prompt} , "
                                                   "masterpiece , highly detailed , 8k , trending")
    fake.KnowledgeableRewriter = lambda: SimpleNamespace(name="rewriter", reprompt=lambda s: f"{s.prompt} chilly")
    monkeypatch.setitem(sys.modules, "seer.world.reprompters", fake)
    import seer.world

    monkeypatch.setattr(seer.world, "reprompters", fake, raising=False)
    monkeypatch.setattr("seer.eval.general.tokenizer_ceiling", lambda *a, **k: {"overall": 1.0})
    monkeypatch.setattr("seer.eval.general.world_understanding_probes", lambda *a, **k: [])
    protocol = R.Protocol(epochs_phase1=1, epochs_phase2=1, epochs_rlmt=1, train_limit=4, n_boot=200,
                          verdict_max_new_tokens=6, reprompt_max_new_tokens=6, general_per_column=2,
                          grid_cases_per_category=1,
                          stage_overrides={"group_size": 2, "queries_per_step": 2, "max_new_tokens": 8,
                                           "tensorboard": False})
    out = tmp_path / "rep"
    md = R.reproduce(out, base=base, protocol=protocol, log=lambda m: None)
    report = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in report["meta"]["steps"]] == [n for n, _ in R.STEPS]
    assert {r["key"] for r in report["table1"]["rows"]} == {"zero_shot", "phase1", "seer_eval"}
    assert report["shortcut"]["judge"]["other_edit"]["pairs"] == 8  # each test quadruplet has a partner
    assert [r["key"] for r in report["shortcut"]["rows"]] == ["zero_shot", "phase1", "seer_eval"]
    assert all(r["other_edit"]["n_decided_judgements"] + r["other_edit"]["n_tie_judgements"] == 16
               for r in report["shortcut"]["rows"])
    assert report["table1"]["rows"][0]["accuracy"]["total"]["n"] == 16  # 8 quadruplets x 2 orders
    proof = report["table1_shortcut_proof"]
    assert set(proof) == {"zero_shot", "phase1", "seer_eval"}
    assert all(e["overall"]["n_pairs"] == 32 and set(e["by_kind"]) == set(e_kinds) for e in proof.values()
               for e_kinds in [("right_vs_plain", "right_vs_other", "right_vs_wrong", "plain_vs_lost")])
    assert report["table1_shortcut_proof_set"]["blind"]["always_the_edit"]["accuracy"] == 0.5
    assert [r["key"] for r in report["table3"]["rows"]] == ["naive", "base_cot", "rlvr_only", "seer_policy_base"]
    assert report["table2"]["rows"][0]["avg_words"] > report["table2"]["rows"][1]["avg_words"]
    assert set(report["failure_modes"]) == {"base", "rlvr_only", "seer", "seer_policy_base"}
    assert [r["key"] for r in report["right_on_own"]["rows"]] == [n for n, _, _ in R.SYSTEMS]
    assert "## Images right on their own" in md.read_text()
    # the ablation: RLMT with the policy from the base, judged by the same RLVR evaluator
    ablation = json.loads((out / "runs/seer_policy_base/rlmt/meta.json").read_text())["derived"]
    assert ablation["init_dir"].startswith(str(base)) and "/seer/rlvr" in ablation["evaluator_dir"]
    assert "rlmt_from_base" in report["training"]
    assert set(report["judged"]) == {n for n, _, _ in R.SYSTEMS}
    # the brightness judge: an image satisfies when bright, and always keeps the subject
    naive_rows = [json.loads(x) for x in (out / "eval/systems/naive/outputs.jsonl").read_text().splitlines()]
    bright = [float(load_image(out / "eval/systems/naive" / r["image"]).mean()) > 128 for r in naive_rows]
    assert report["judged"]["naive"]["total"] == {"n": 8, "satisfied": float(np.mean(bright)), "subject_kept": 1.0,
                                                  "success": float(np.mean(bright))}
    assert "## Each system's images on their own" in md.read_text()
    assert [r["key"] for r in report["added_words"]["rows"]] == ["seer", "seer_policy_base", "base_cot", "rlvr_only"]
    assert len(report["general"]["generation"]["rows"]) == 3
    pairs = (out / "eval/pairs.jsonl").read_text().splitlines()
    assert len(pairs) == 8 * 6
    assert len(report["figures"]["grids"]) == 4 and all((out / p).is_file() for p in report["figures"]["grids"])
    text = md.read_text()
    assert "## Table 1" in text and "## Evaluator shortcut probe" in text and "## Targets" in text
    assert text.index("shortcut-proof set (the headline") < text.index("## Table 1 (paper-style pairs)")
    assert "paper (Harmon-1.5B, humans)" in text
    # the base's generator (the paper's fixed G) drew RLMT's training images and every compared system's
    rlmt_meta = json.loads((out / "runs/seer/rlmt/meta.json").read_text())
    assert rlmt_meta["derived"]["generator_dir"] == str(base)
    assert "drawn by the base world model's generator" in text
    naive = json.loads((out / "eval/systems/naive/outputs.jsonl").read_text().splitlines()[0])
    from seer.backends.token_umm import TokenUMMBackend

    drawn = load_image(out / "eval/systems/naive" / naive["image"])
    redrawn = TokenUMMBackend.load(base).generate_images([naive["prompt_used"]], [naive["seed"]])[0]
    assert np.array_equal(drawn, redrawn)
    # a rerun with --resume skips every step and rewrites the same tables
    R.reproduce(out, base=base, protocol=protocol, resume=True, log=lambda m: None)
    again = json.loads((out / "report.json").read_text())
    assert again["table3"] == report["table3"] and again["table1"] == report["table1"]
    assert all(s["status"] == "done (earlier run)" for s in again["meta"]["steps"])
