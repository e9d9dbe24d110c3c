"""The shortcut-proof Table 1 set (issue 21): blind strategies score 0.5, a perfect reader 1.0, bad files named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seer.cli import UserError
from seer.data import CATEGORIES, HARD_CATEGORIES, SIMPLE_CATEGORIES, DataError, Quadruplet, write_jsonl
from seer.eval import shortcut_proof as SP
from seer.eval.evaluator import QuadJudgment

SHIPPED = Path(__file__).resolve().parents[1] / "seer" / "world" / "assets" / "data"


def _pairs(cases_per_split: int = 3) -> list[Quadruplet]:
    """Every split gets ``cases_per_split`` test cases, each with one pair of every kind."""
    out = []
    n = 0
    for dist in ("id", "ood"):
        for cats in (SIMPLE_CATEGORIES, HARD_CATEGORIES):
            for i in range(cases_per_split):
                n += 1
                cat = cats[i % len(cats)]
                for kind in SP.KINDS:
                    out.append(Quadruplet(SP.pair_id(kind, f"qt-{n:04d}"), 2, "make it red", "a cat", cat,
                                          f"images/{n}-{kind}-c.png", f"images/{n}-{kind}-r.png", "test", dist))
    return out


def _judgment(q: Quadruplet, first: str | None, second: str | None) -> QuadJudgment:
    return QuadJudgment(q.id, 2, q.category, q.distribution, first, second)


def _edit_reader(q: Quadruplet) -> QuadJudgment:
    """By hand, not through the module: names the edited image; where both (or neither) are edited, answers A."""
    kind = q.id.split("-")[1]
    edited = {"right_vs_plain": "chosen", "plain_vs_lost": "rejected"}.get(kind)
    if edited is None:
        return _judgment(q, "A", "A")
    # order 1 shows the chosen image as A, order 2 as B
    return _judgment(q, "A" if edited == "chosen" else "B", "B" if edited == "chosen" else "A")


def test_always_the_edit_and_always_a_score_one_half_and_a_perfect_reader_one():
    pairs = _pairs()
    always_edit = SP.score(pairs, SP.verdict_picks([_edit_reader(q) for q in pairs]), n_boot=200)
    always_a = SP.score(pairs, SP.verdict_picks([_judgment(q, "A", "A") for q in pairs]), n_boot=200)
    perfect = SP.score(pairs, SP.verdict_picks([_judgment(q, "A", "B") for q in pairs]), n_boot=200)
    assert always_edit["overall"]["accuracy"] == 0.5
    assert always_a["overall"]["accuracy"] == 0.5
    assert perfect["overall"]["accuracy"] == 1.0
    assert {k: v["accuracy"] for k, v in always_edit["by_kind"].items()} == {
        "right_vs_plain": 1.0, "right_vs_other": 0.5, "right_vs_wrong": 0.5, "plain_vs_lost": 0.0}
    # and in every split, since each test case gives one pair of each kind
    for res in (always_edit, always_a):
        assert {s: v["accuracy"] for s, v in res["by_split"].items()} == {s: 0.5 for s in SP.SPLITS}
    assert all(v["accuracy"] == 1.0 for v in perfect["by_split"].values())
    # the module's own blind strategies agree with the hand-made readers
    blind = SP.shortcut_rows(pairs, n_boot=200)
    assert blind["always_the_edit"]["accuracy"] == 0.5 and blind["always_a"]["accuracy"] == 0.5
    assert perfect["overall"]["n_pairs"] == len(pairs)
    assert always_edit["overall"]["ci_low"] <= 0.5 <= always_edit["overall"]["ci_high"]


def test_unparseable_verdicts_count_wrong():
    pairs = _pairs(1)
    res = SP.score(pairs, SP.verdict_picks([_judgment(q, None, "B") for q in pairs]), n_boot=100)
    assert res["overall"]["accuracy"] == 0.5


def test_trace_reference_rows_read_the_trace():
    """A world trace that reads both images right: the true rule on its reads is perfect, whatever its verdict; on
    the paper's pair "prefer the edit" on the same reads is right too, on a plain-vs-lost pair it is wrong."""
    instr, prompt = "carve it from a block of wood .", "a cat"
    from seer.world import semantics as S

    S.instruction(instr)  # the test needs a registered instruction
    red, plain, lost = "a wood cat", "a cat", "a wood dog"
    pairs = [Quadruplet(SP.pair_id("right_vs_plain", "qt-1"), 2, instr, prompt, "material_synthesis",
                        "c.png", "r.png", "test", "id"),
             Quadruplet(SP.pair_id("plain_vs_lost", "qt-1"), 2, instr, prompt, "material_synthesis",
                        "c.png", "r.png", "test", "id")]

    def trace(a: str, b: str, verdict: str) -> str:
        return f"<think> image A shows {a} . image B shows {b} . </think> <answer> {verdict} </answer>"

    js = [QuadJudgment(pairs[0].id, 2, "material_synthesis", "id", "B", "A",
                       trace(red, plain, "B"), trace(plain, red, "A")),
          QuadJudgment(pairs[1].id, 2, "material_synthesis", "id", "B", "A",
                       trace(plain, lost, "B"), trace(lost, plain, "A"))]
    ref = SP.trace_reference(pairs, js, n_boot=100)
    assert ref["traces_reading_both_images"] == 1.0
    assert ref["true_rule_on_reads"]["by_kind"]["right_vs_plain"]["accuracy"] == 1.0
    assert ref["true_rule_on_reads"]["by_kind"]["plain_vs_lost"]["accuracy"] == 1.0
    assert ref["prefer_edit_on_reads"]["by_kind"]["right_vs_plain"]["accuracy"] == 1.0
    assert ref["prefer_edit_on_reads"]["by_kind"]["plain_vs_lost"]["accuracy"] == 0.0
    entry = SP.evaluator_entry("x", "X", pairs, js, n_boot=100)
    assert entry["overall"]["accuracy"] == 0.0  # the verdicts named the loser every time
    # a trace that reads nothing scores 0.5 on both reference rows
    blank = [QuadJudgment(q.id, 2, q.category, q.distribution, "A", "B", "<think> </think>", "") for q in pairs]
    ref = SP.trace_reference(pairs, blank, n_boot=100)
    assert ref["true_rule_on_reads"]["overall"]["accuracy"] == 0.5
    assert ref["traces_reading_both_images"] == 0.0


def test_missing_file_names_the_command(tmp_path):
    with pytest.raises(DataError) as e:
        SP.load_pairs(tmp_path / SP.PAIRS_FILE, base="b dir", seed=3)
    msg = str(e.value)
    assert str(tmp_path / SP.PAIRS_FILE) in msg
    assert f"seer world build-data --shortcut-set-only --out {tmp_path} --base 'b dir' --seed 3" in msg


def test_bad_id_and_unequal_kinds_are_refused(tmp_path):
    pairs = _pairs(1)
    bad = [*pairs[:2], Quadruplet("qt-7", 2, "make it red", "a cat", CATEGORIES[0], "a.png", "b.png", "test", "id")]
    path = tmp_path / SP.PAIRS_FILE
    write_jsonl(path, bad)
    with pytest.raises(DataError, match=rf"{SP.PAIRS_FILE}:3: field 'id' is 'qt-7'"):
        SP.load_pairs(path, check_images=False)
    write_jsonl(path, pairs[:-1])  # the last case lost one kind
    with pytest.raises(DataError, match="equal counts"):
        SP.load_pairs(path, check_images=False)


def test_subset_keeps_all_four_kinds_of_each_case():
    pairs = _pairs(3)
    sub = SP.subset_cases(pairs, 5)
    assert len(sub) == 5 * len(SP.KINDS)
    SP.check_balanced(sub, "subset")


def test_shipped_set_is_balanced_and_built_from_the_test_quadruplets():
    from seer.data import load_quadruplets

    pairs = SP.load_pairs(SHIPPED / SP.PAIRS_FILE)
    quads = {q.id: q for q in load_quadruplets(SHIPPED / "quadruplets_test.jsonl")}
    assert len(pairs) % len(SP.KINDS) == 0 and len(pairs) >= 4 * 40
    for q in pairs:
        src = quads[SP.case_of(q)]  # every case is a test quadruplet: test instructions only
        assert (q.instruction, q.prompt, q.distribution) == (src.instruction, src.prompt, src.distribution)
        if SP.kind_of(q) == "right_vs_plain":
            assert (q.image_chosen, q.image_rejected) == (src.image_chosen, src.image_rejected)
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    assert manifest["test_quadruplets"] == len(quads)


def test_reproduce_resume_on_old_data_names_the_file_before_training(tmp_path, monkeypatch):
    from seer.eval import reproduce as R

    calls = []
    monkeypatch.setattr(R, "STEPS", (("data", lambda rep: calls.append("data") or {}),
                                     ("rlvr", lambda rep: calls.append("rlvr") or {}),
                                     ("table1_shortcut_proof", R.step_table1_shortcut_proof)))
    monkeypatch.setattr(R, "build_report", lambda rep: {"meta": {"steps": rep.steps}})
    out = tmp_path / "rep"
    R.reproduce(out, quick=True, only=("data",), log=lambda m: None)
    before = sorted(p.name for p in (out / "steps").iterdir())
    with pytest.raises(UserError) as e:
        R.reproduce(out, quick=True, resume=True, log=lambda m: None)
    assert str(out / "data" / SP.PAIRS_FILE) in str(e.value)
    assert "seer world build-data --shortcut-set-only --out" in str(e.value)
    assert calls == ["data"]  # refused before RLVR trained
    assert sorted(p.name for p in (out / "steps").iterdir()) == before  # nothing computed lost


def test_seer_eval_evaluator_names_the_missing_file(tmp_path, capsys):
    from seer.cli import main

    write_jsonl(tmp_path / "quadruplets_test.jsonl", [])
    rc = main(["eval", "evaluator", "--quadruplets", str(tmp_path / "quadruplets_test.jsonl"),
               "--model", str(tmp_path / "no-model")])
    err = capsys.readouterr().err
    assert rc == 2
    assert SP.PAIRS_FILE in err and "--shortcut-set-only" in err


# -- item 2: RLMT judged in both orders -------------------------------------------------------------------------------
def test_rlmt_both_orders_reward_and_position_inconsistency():
    from seer.config import RLMTConfig, load_config
    from seer.eval.reproduce import world_recipe
    from seer.stages import rlmt

    cfg = load_config(RLMTConfig, world_recipe("rlmt"), flags={"evaluator": "e", "samples": "s"})
    assert cfg.judge_both_orders  # the world recipe's default
    v = {x: f"<think> x </think> <answer> {x} </answer>" for x in "AB"}
    # reprompt image shown at A then B: named both times / named once (the same letter twice) / never
    verdicts = [v["A"], v["B"], v["A"], v["A"], v["B"], v["A"]]
    rewards, unparseable = rlmt.judge_rewards(cfg, verdicts, ["A", "B"] * 3)
    assert rewards == [1.0, 0.5, 0.0] and unparseable == 0
    assert rlmt.position_inconsistent(verdicts) == 1
    assert rlmt.position_inconsistent([v["A"], "garbage"]) == 0  # unparseable is counted apart
    single = load_config(RLMTConfig, world_recipe("rlmt"), flags={"evaluator": "e", "samples": "s",
                                                                  "judge_both_orders": False})
    assert rlmt.judge_rewards(single, [v["A"], v["A"]], ["A", "B"])[0] == [1.0, 0.0]


# -- item 4: images right on their own, with a paired test ------------------------------------------------------------
def test_right_on_own_rates_cis_and_paired_test():
    from types import SimpleNamespace

    import numpy as np

    from seer.data import Sample
    from seer.eval.win_ratio import right_on_own

    samples = [Sample(f"t{i}", "make it red", "a cat", ("material_synthesis", "constraint_reasoning")[i % 2],
                      "test", "id") for i in range(20)]
    # the image's mean brightness is its verdict: right when bright (the judge reads nothing else)
    def system(label, right_ids):
        return SimpleNamespace(label=label, image=lambda sid: np.full((4, 4, 3), 255 if sid in right_ids else 0,
                                                                      np.uint8))

    judge = SimpleNamespace(name="bright", assess=lambda s, im: SimpleNamespace(satisfied=im.mean() > 128,
                                                                                 subject_kept=True))
    base_right = {"t0", "t1"}
    seer_right = {f"t{i}" for i in range(12)}  # every case base gets right, and 10 more
    out = right_on_own(judge, samples, {"seer": system("SEER", seer_right), "base_cot": system("Base", base_right)},
                       n_boot=200)
    seer, base = out["rows"]
    t = seer["cells"]["total"]
    assert (t["rate"], t["reference_rate"]) == (0.6, 0.1) and t["ratio_to_reference"] == pytest.approx(6.0)
    assert (t["only_this_right"], t["only_reference_right"]) == (10, 0)
    assert t["p_value"] == 2 * 0.5 ** 10  # exact two-sided sign test on the 10 discordant cases
    assert t["ci_low"] < 0.6 < t["ci_high"]
    assert seer["cells"]["simple"]["n"] == 10 and seer["cells"]["hard"]["n"] == 10
    assert "p_value" not in base["cells"]["total"]
