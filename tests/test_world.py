"""seer.world: renderer, semantics, splits, errors, codebook — fast tests that need no trained model."""

from __future__ import annotations

import numpy as np
import pytest

from seer.data import CATEGORIES, HARD_CATEGORIES, Sample
from seer.world import semantics as S
from seer.world.render import (
    ATTRIBUTES,
    SUBJECTS,
    TEST_SUBJECTS,
    TRAIN_SUBJECTS,
    Spec,
    WorldError,
    all_patches,
    render,
)


def test_render_is_deterministic_and_carries_exact_metadata():
    a, sa = render(Spec(subject="cat", colour="pink"), seed=3)
    b, sb = render(Spec(subject="cat", colour="pink"), seed=3)
    c, _ = render(Spec(subject="cat", colour="pink"), seed=4)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and sa == sb
    assert all(v is not None for v in sa.attributes().values())
    assert sa.subject == "cat" and sa.colour == "pink"
    assert not np.array_equal(a, c) or sa != render(Spec(subject="cat", colour="pink"), seed=4)[1]


def test_every_attribute_value_changes_the_pixels():
    base = Spec(subject="cat", colour="red", material="plain", style="normal", accessory="none",
                background="grass", size="large", top=2, left=1)
    ref, _ = render(base, 0)
    for attr, values in ATTRIBUTES.items():
        for v in values:
            if v == getattr(base, attr):
                continue
            img, spec = render(Spec(**{**base.to_dict(), attr: v}), 0)
            assert getattr(spec, attr) == v
            assert not np.array_equal(img, ref), f"{attr}={v} draws the same image"


def test_subject_splits_are_disjoint_and_cover_all():
    assert len(SUBJECTS) >= 12
    assert not set(TRAIN_SUBJECTS) & set(TEST_SUBJECTS)
    assert set(TRAIN_SUBJECTS) | set(TEST_SUBJECTS) == set(SUBJECTS)


def test_instruction_splits():
    ood_texts = {i.text for i in S.OOD_INSTRUCTIONS}
    train_texts = {i.text for i in S.TRAIN_INSTRUCTIONS}
    assert not ood_texts & train_texts
    for cat in CATEGORIES:
        assert sum(i.category == cat for i in S.TRAIN_INSTRUCTIONS) == 10
    # OOD hard instructions use concepts no training instruction uses
    train_concepts = {i.concept for i in S.TRAIN_INSTRUCTIONS if i.concept}
    for i in S.OOD_INSTRUCTIONS:
        if i.category in HARD_CATEGORIES:
            assert i.concept not in train_concepts
    from seer.world.build_data import test_instructions

    tests = test_instructions(0)
    assert len(tests) == 40
    for dist in ("id", "ood"):
        sub = [i for i in tests if i.distribution == dist]
        assert len(sub) == 20
        assert sum(i.difficulty == "simple" for i in sub) == 8  # Simple:Hard = 2:3


def test_hard_instructions_contain_no_caption_words():
    for i in S.INSTRUCTIONS.values():
        if i.difficulty == "hard":
            assert not set(S.tokenize(i.text)) & S.CAPTION_WORDS, i.text


@pytest.mark.parametrize("name", list(S.CONCEPTS))
def test_every_concept_has_a_satisfying_and_a_violating_render(name):
    rng = np.random.default_rng(0)
    c = S.concept(name)
    _, good = render(S.satisfying_spec(c.target, {"subject": "cat"}, rng), 1)
    _, bad = render(S.violating_spec(c.target, {"subject": "cat"}, rng), 1)
    assert S.satisfies(good.attributes(), c.target)
    assert not S.satisfies(bad.attributes(), c.target)
    assert S.compliance(bad.attributes(), c.target) == 0.0


def test_caption_round_trip_and_defaults():
    attrs = {"subject": "cat", "size": "large", "colour": "pink", "material": "ice", "accessory": "crown",
             "background": "grass", "style": "night"}
    text = S.caption(attrs)
    assert text == "a large pink ice cat with a crown on grass , night"
    assert S.parse_caption(text) == attrs
    spec = S.spec_for_caption("a cat")
    assert (spec.material, spec.style, spec.accessory) == ("plain", "normal", "none")
    assert spec.colour is None and spec.background is None


def test_unknown_names_raise_errors_listing_what_is_known():
    with pytest.raises(WorldError, match="known: .*cat"):
        Spec(subject="unicorn")
    with pytest.raises(WorldError, match="known: .*pink"):
        Spec(colour="chartreuse")
    with pytest.raises(WorldError, match="known: .*scary yet cute"):
        S.concept("whimsical")
    with pytest.raises(WorldError, match="known: .*material_synthesis"):
        S.check_category("cooking")
    with pytest.raises(WorldError, match="known: .*cat"):
        S.prompt_attributes("a unicorn")
    with pytest.raises(WorldError, match="unknown instruction"):
        S.instruction("make it sing")
    assert S.instruction("Make it look scary, yet undeniably cute.").concept == "scary yet cute"


def test_codebook_round_trip_is_exact_on_renders():
    from seer.world.codebook import LookupCodebook, fit_codebook

    cb = fit_codebook(seed=0, n_images=400)
    assert cb.num_codes == 1024 and cb.tokens_per_image == 64
    assert len(all_patches()) <= cb.num_codes
    imgs = np.stack([render(None, s)[0] for s in range(50)])
    assert np.array_equal(cb.roundtrip(imgs), imgs)
    assert np.array_equal(LookupCodebook(cb).encode(imgs), cb.encode(imgs))


def test_reprompters_and_naive():
    from seer.world.reprompters import REPROMPTERS

    s = Sample(id="t1", instruction="make it look scary , yet undeniably cute .", prompt="a ghost",
               category="constraint_reasoning")
    assert REPROMPTERS["naive"].reprompt(s) == s.naive_prompt
    assert "masterpiece" in REPROMPTERS["verbose_expander"].reprompt(s)
    k = REPROMPTERS["knowledgeable_rewriter"].reprompt(s)
    assert "ghost" in k and k == REPROMPTERS["knowledgeable_rewriter"].reprompt(s)


def test_corpus_keeps_abstract_words_off_the_generation_side():
    from seer.world import corpus as C

    rng = np.random.default_rng(0)
    concept_words = {w for c in S.CONCEPTS for w in S.tokenize(c)} - S.FUNCTION_WORDS
    for _ in range(300):
        kind, (prompt, img) = C.make_example("generate", rng)
        assert kind == "image" and img.shape == (32, 32, 3)
        words = set(S.tokenize(prompt))
        assert not words & concept_words, prompt
        assert not words & (C.INSTRUCTION_WORDS - S.CAPTION_WORDS - S.FUNCTION_WORDS), prompt


def test_reprompt_prior_paths_use_the_rlmt_format():
    from seer.prompts import parse_reprompt
    from seer.world import corpus as C

    rng = np.random.default_rng(1)
    instr = S.instruction("make it look scary , yet undeniably cute .")
    paths = set()
    for _ in range(60):
        text, path = C.reprompt_completion(instr, "a ghost", rng)
        assert parse_reprompt(text).ok, text
        paths.add(path)
    assert paths == {"faithful", "type1", "type2", "type3"}


def test_every_corpus_kind_of_both_mixes_makes_an_example():
    from seer.backends.base import Context
    from seer.world import corpus as C

    assert set(C.MIX) | set(C.WARM_KINDS) <= set(C.KINDS)
    assert abs(sum(C.MIX.values()) - 1) < 1e-9
    rng = np.random.default_rng(2)
    for kind in C.KINDS:
        what, payload = C.make_example(kind, rng)
        assert what == ("image" if kind in ("generate", "paint", "generate_distracted", "generate_uncond") else "text")
        if what == "text":
            ctx, completion = payload
            assert isinstance(ctx, Context) and completion.strip()
    for _ in range(20):  # the warm-up questions ask for the subject or its colour, answered from the render
        _, (ctx, answer) = C.make_example("read", rng)
        assert ctx.text in ("<image> what is it ?", "<image> what colour is it ?")
        assert answer in (ATTRIBUTES["colour"] if "colour" in ctx.text else SUBJECTS)


def test_judged_evaluator_prior_judges_each_image_and_its_verdict_follows_the_judgement_only_sometimes():
    import re

    from seer.prompts import NO_INSTRUCTION, parse_verdict
    from seer.world import corpus as C

    rng = np.random.default_rng(4)
    follows, both_orders = [], set()
    for _ in range(400):
        _, (ctx, completion) = C.make_example("evaluate_judged", rng)
        judged = re.findall(r"image ([AB]) shows [^.]*\. (prompt|instruction) (yes|no) \.", completion)
        assert [x for x, _, _ in judged] == ["A", "B"], completion
        phase1 = f"instruction : {NO_INSTRUCTION} prompt" in ctx.text
        assert {d for _, d, _ in judged} == ({"prompt"} if phase1 else {"instruction"}), (ctx.text, completion)
        passing = [x for x, _, ok in judged if ok == "yes"]
        verdict = parse_verdict(completion).answer
        assert verdict in ("A", "B")
        if len(passing) == 1:
            follows.append(verdict == passing[0])
            both_orders.add(passing[0])
    assert len(follows) > 300 and both_orders == {"A", "B"}  # the passing image sits in either position
    assert abs(np.mean(follows) - C.VERDICT_FOLLOWS) < 0.08  # a weak link, not a rule and not a coin flip
    for _ in range(20):  # the shipped base's prior: captions only
        _, (ctx, completion) = C.make_example("evaluate", rng)
        assert re.fullmatch(r"<think> image A shows [^.]* \. image B shows [^.]* \. </think> <answer> [AB] </answer>",
                            completion), completion


def test_balanced_evaluator_prior_shows_the_prompt_subject_by_coin_flip_so_captions_must_be_read():
    import re

    from seer.prompts import NO_INSTRUCTION
    from seer.world import corpus as C

    rng = np.random.default_rng(6)
    shows_prompt_subject = {"prompt": [], "instruction": []}
    for _ in range(300):
        _, (ctx, completion) = C.make_example("evaluate_balanced", rng)
        prompt_subject = S.parse_caption(re.search(r"prompt : (.*?) \. which", ctx.text).group(1))["subject"]
        dim = "prompt" if f"instruction : {NO_INSTRUCTION} prompt" in ctx.text else "instruction"
        judged = re.findall(r"image ([AB]) shows ([^.]*) \. (prompt|instruction) (yes|no) \.", completion)
        assert [x for x, *_ in judged] == ["A", "B"] and {d for *_, d, _ in judged} == {dim}, completion
        for _, caption, _, ok in judged:
            same = S.parse_caption(caption)["subject"] == prompt_subject
            shows_prompt_subject[dim].append(same)
            if not same:  # an image of another subject never passes
                assert ok == "no", completion
            elif dim == "prompt":
                assert ok == "yes", completion
    for dim, seen in shows_prompt_subject.items():  # the caption's subject cannot be guessed from the prompt
        assert len(seen) > 150 and abs(np.mean(seen) - 0.5) < 0.08, (dim, np.mean(seen))


def test_paths_evaluator_prior_checks_the_instruction_on_a_minority_path_and_its_verdict_follows_its_checks():
    import re

    from seer.prompts import NO_INSTRUCTION, parse_verdict
    from seer.world import corpus as C

    rng = np.random.default_rng(8)
    checks_instruction, followed = [], []
    for _ in range(400):
        _, (ctx, completion) = C.make_example("evaluate_paths", rng)
        m = re.fullmatch(r"<think> (prompt|instruction) : image A shows [^.]* \. (\w+) (yes|no) \. "
                         r"image B shows [^.]* \. (\w+) (yes|no) \. </think> <answer> ([AB]) </answer>", completion)
        assert m, completion
        path, dim_a, ok_a, dim_b, ok_b, verdict = m.groups()
        assert dim_a == dim_b == path and verdict == parse_verdict(completion).answer
        if f"instruction : {NO_INSTRUCTION} prompt" in ctx.text:
            assert path == "prompt"  # basic alignment always checks the prompt
        else:
            checks_instruction.append(path == "instruction")
        if ok_a != ok_b:
            followed.append(verdict == ("A" if ok_a == "yes" else "B"))
    assert abs(np.mean(checks_instruction) - C.INSTRUCTION_PATH) < 0.08  # a minority path, there to be reinforced
    assert len(followed) > 100 and all(followed)  # the verdict follows the checks; what is checked is the weakness
    with pytest.raises(ValueError, match="unknown evaluator prior"):
        C.evaluate_example(rng, 0, "coin")


def test_paths_evaluator_prior_edits_half_its_phase2_negatives_wrongly(monkeypatch):
    from seer.world import corpus as C

    positives, wrong = [], []
    real_sat, real_vio = S.satisfying_spec, S.violating_spec
    monkeypatch.setattr(S, "satisfying_spec", lambda *a: positives.append(a[0]) or real_sat(*a))
    monkeypatch.setattr(S, "violating_spec", lambda *a: (lambda sp: wrong.append((a[0], sp)) or sp)(real_vio(*a)))
    rng = np.random.default_rng(3)
    for _ in range(300):
        C.make_example("evaluate_paths", rng)
    assert abs(len(wrong) / len(positives) - C.WRONG_EDIT) < 0.1  # of the phase-2 pairs
    assert all(not S.satisfies(spec.attributes(), rule) and spec.attributes() != {**S.DEFAULTS, "subject": spec.subject}
               for rule, spec in wrong)  # edited, and wrongly
    n = len(wrong)
    for _ in range(100):
        C.make_example("evaluate_balanced", rng)
    assert len(wrong) == n  # the other priors keep the plain negative


def test_distracted_captions_put_a_clause_the_generator_cannot_draw_before_the_caption():
    from seer.world import corpus as C

    rng = np.random.default_rng(4)
    for _ in range(50):
        kind, (prompt, image) = C.make_example("generate_distracted", rng)
        clause, _, caption = prompt.partition(" . ")
        assert kind == "image" and image.shape == (32, 32, 3)
        assert 3 <= len(clause.split()) <= 10 and S.parse_caption(clause) == {}  # nothing in it can be drawn
        assert "subject" in S.parse_caption(caption)
    assert {"scary", "cute"} <= set(C.DISTRACTOR_WORDS)  # instruction words, as noise only
    assert not set(C.DISTRACTOR_WORDS) & (S.CAPTION_WORDS | set(S.SUBJECTS))
    assert "generate_distracted" not in C.MIX  # off unless PretrainConfig.distract > 0


def test_unconditional_examples_drop_the_prompt_and_keep_the_captions_images():
    from seer.world import corpus as C

    rng = np.random.default_rng(5)
    examples = [C.make_example("generate_uncond", rng) for _ in range(40)]
    assert all(kind == "image" and prompt == "" and image.shape == (32, 32, 3) for kind, (prompt, image) in examples)
    assert len({image.tobytes() for _, (_, image) in examples}) == 40
    assert "generate_uncond" not in C.MIX  # off unless PretrainConfig.uncond > 0


def test_follow_kind_is_the_paths_prior_behind_a_text_only_context():
    import re

    from seer.prompts import parse_verdict
    from seer.world import corpus as C

    rng = np.random.default_rng(6)
    followed = []
    for _ in range(100):
        kind, (ctx, completion) = C.make_example("follow", rng)
        assert kind == "text" and ctx.text == C.FOLLOW_CONTEXT and ctx.images == ()
        ok_a, ok_b = re.search(r"(yes|no) \. image B shows [^.]* \. \w+ (yes|no) \.", completion).groups()
        if ok_a != ok_b:
            followed.append(parse_verdict(completion).answer == ("A" if ok_a == "yes" else "B"))
    assert len(followed) > 30 and all(followed)
    assert "follow" not in C.MIX


def test_warm_kinds_read_details_and_paint_stated_colours():
    from seer.world import corpus as C

    rng = np.random.default_rng(5)
    for _ in range(20):
        _, (ctx, answer) = C.make_example("read_detail", rng)
        k = {v: k for k, v in C.QUESTIONS.items()}[ctx.text.removeprefix("<image> ")]
        assert k in C.DETAIL_WEIGHTS and answer in ATTRIBUTES[k]
        text, spec = C.paint_caption(rng)
        stated = S.parse_caption(text)
        assert stated["colour"] == spec.colour and stated["subject"] == spec.subject
        assert stated.get("material", "plain") == spec.material
        assert set(stated) <= {"subject", "colour", "material"}


def test_evaluator_sight_and_comparison_tells_a_prompt_copier_from_a_reader(tmp_path):
    from seer.backends.base import Completion
    from seer.data import Quadruplet, save_image, write_jsonl
    from seer.world.report import evaluator_sight_and_comparison

    subjects = ("cat", "dog", "fish", "tree")
    quads = []
    for i, s in enumerate(subjects):  # the chosen image is all value 10*i, the rejected one all 200+i
        save_image(tmp_path / f"c{i}.png", np.full((8, 8, 3), 10 * i, np.uint8))
        save_image(tmp_path / f"r{i}.png", np.full((8, 8, 3), 200 + i, np.uint8))
        quads.append(Quadruplet(f"q{i}", 1, "", f"a {s}", "material_synthesis", f"c{i}.png", f"r{i}.png"))
    quads.append(Quadruplet("q9", 2, "make it icy", "a cat", "material_synthesis", "c0.png", "r0.png"))  # skipped
    write_jsonl(tmp_path / "q.jsonl", quads)

    class Stub:
        def __init__(self, reads: bool):
            self.reads = reads

        def generate_text(self, contexts, n, params, seed=None):
            rows = []
            for ctx in contexts:
                prompt_subject = ctx.text.split("prompt : a ")[1].split()[0]
                said = []
                for im in ctx.images:
                    chosen = int(np.asarray(im)[0, 0, 0]) < 200
                    said.append(prompt_subject if chosen or not self.reads else "ghost")
                verdict = "A" if said[0] == prompt_subject and said[1] != prompt_subject else "B"
                text = (f"<think> image A shows a {said[0]} . image B shows a {said[1]} . </think> "
                        f"<answer> {verdict} </answer>")
                rows.append([Completion([], text, [], False)] * n)
            return rows

    reader = evaluator_sight_and_comparison(Stub(reads=True), tmp_path / "q.jsonl", seed=0)
    assert reader == {"n": 4, "chosen_caption_names_prompt_subject": 1.0, "rejected_caption_names_prompt_subject": 0.0,
                      "one_caption_names_prompt_subject": 1.0, "verdict_picks_that_image": 1.0, "accuracy": 1.0}
    copier = evaluator_sight_and_comparison(Stub(reads=False), tmp_path / "q.jsonl", seed=0)
    assert copier["chosen_caption_names_prompt_subject"] == copier["rejected_caption_names_prompt_subject"] == 1.0
    assert copier["one_caption_names_prompt_subject"] == 0.0 and copier["verdict_picks_that_image"] is None
