"""World v2 (issue 20): the decoupled vision input, the single-image judgement task, the checked pairwise prior, the
vision encoder's determinism and the gates."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
import torch

from seer.backends.base import BackendError, Context, SamplingParams
from seer.backends.token_umm import TokenUMMBackend, tiny_random_backend
from seer.prompts import DEFAULT_TEMPLATES, parse_verdict
from seer.world import corpus as C
from seer.world import semantics as S
from seer.world.render import ATTRIBUTES


def _image(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _eval_ctx(seed: int = 0) -> Context:
    return Context(DEFAULT_TEMPLATES.evaluator_text("make it ice", "a cat"), (_image(seed), _image(seed + 1)))


@pytest.fixture
def vbackend() -> TokenUMMBackend:
    return tiny_random_backend(seed=0, vision=True)


# -- the vision input -------------------------------------------------------------------------------------------
def test_understanding_images_read_through_the_encoder_generation_keeps_code_rows(vbackend):
    b = vbackend
    emb = b.model.get_input_embeddings()
    span = b.net.span
    ctx_ids = torch.tensor([b.encode_context(_eval_ctx())])
    e0 = emb(ctx_ids)
    e1 = b.vision.embed(ctx_ids, e0, span)
    is_code = (ctx_ids >= b.image_start)[0]
    changed = (e0 != e1).any(-1)[0]
    assert torch.equal(changed, is_code) and int(is_code.sum()) == 2 * b.image_tokenizer.tokens_per_image
    # a generation example (<gen> ... <boi> codes <eoi>) and a one-token decode step keep their code rows
    gen_ids = torch.tensor([b.encode_image_example("a cat", _image(3))[0]])
    assert torch.equal(b.vision.embed(gen_ids, emb(gen_ids), span), emb(gen_ids))
    step = torch.tensor([[b.image_start + 5]])
    assert torch.equal(b.vision.embed(step, emb(step), span), emb(step))
    # the features are those of the image's pixels: the same image, the same features, wherever it sits
    other = torch.tensor([b.encode_context(Context("x <image>", (_image(0),)))])
    f_a = b.vision.embed(ctx_ids, e0, span)[0][is_code][: b.image_tokenizer.tokens_per_image]
    f_b = b.vision.embed(other, emb(other), span)[0][(other >= b.image_start)[0]]
    torch.testing.assert_close(f_a, f_b)


def test_an_incomplete_image_span_is_an_error(vbackend):
    b = vbackend
    ids = torch.tensor([[b.bos_id, b.boi_id, b.image_start, b.image_start + 1]])
    with pytest.raises(BackendError, match="not a multiple"):
        b.vision.embed(ids, b.model.get_input_embeddings()(ids), b.net.span)


def test_vision_backend_sampled_logprobs_equal_recomputed_and_shared_prefill(vbackend):
    b = vbackend
    ctxs = [_eval_ctx(), _eval_ctx(5)]
    out = b.generate_text(ctxs, 3, SamplingParams(max_new_tokens=8), seed=2)
    flat_ctx = [c for c in ctxs for _ in range(3)]
    comps = [c.token_ids for r in out for c in r]
    lp, mask = b.token_logprobs(flat_ctx, comps)
    torch.testing.assert_close(lp[mask.bool()].detach(), torch.tensor([x for r in out for c in r for x in c.logprobs]),
                               atol=1e-4, rtol=1e-4)
    b.share_prefix = False
    lp_flat, _ = b.token_logprobs(flat_ctx, comps)
    torch.testing.assert_close(lp.detach(), lp_flat.detach(), atol=1e-5, rtol=1e-5)


def test_vision_backend_training_moves_theta_and_the_aligner_not_phi(vbackend):
    b = vbackend
    phi0 = b.frozen_state()
    assert any(k.startswith("vision.encoder.") for k in phi0)
    aligner0 = {n: p.detach().clone() for n, p in b.vision.aligner.named_parameters()}
    trainable = {id(p) for p in b.trainable_parameters()}
    assert all(id(p) in trainable for p in b.vision.aligner.parameters())
    assert not any(id(p) in trainable for p in b.vision.encoder.parameters())
    out = b.generate_text([_eval_ctx()], 2, SamplingParams(max_new_tokens=8), seed=0)
    opt = torch.optim.AdamW(b.trainable_parameters(), lr=1e-2, weight_decay=0.1)
    lp, mask = b.token_logprobs([_eval_ctx()] * 2, [c.token_ids for c in out[0]])
    (-(lp * mask).sum()).backward()
    opt.step()
    b.after_optimizer_step()
    for k, v in b.frozen_state().items():
        assert torch.equal(v, phi0[k]), k
    assert any(not torch.equal(p, aligner0[n]) for n, p in b.vision.aligner.named_parameters())


def test_vision_backend_save_load_round_trip_and_bad_files(vbackend, tmp_path):
    b = vbackend
    ctx, comp = [_eval_ctx()], [[b.eos_id]]
    b.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "backend.json").read_text())
    assert meta["vision"]["encoder"] == "seer.world.vision"
    b2 = TokenUMMBackend.load(tmp_path / "m")
    torch.testing.assert_close(b2.token_logprobs(ctx, comp)[0], b.token_logprobs(ctx, comp)[0])
    assert b2.generate_images(["a cat"], [3])[0].tobytes() == b.generate_images(["a cat"], [3])[0].tobytes()
    (tmp_path / "m" / "aligner.safetensors").unlink()
    with pytest.raises(BackendError, match="aligner.safetensors: missing"):
        TokenUMMBackend.load(tmp_path / "m")
    b.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "vision_encoder.json").read_text())
    (tmp_path / "m" / "vision_encoder.json").write_text(json.dumps({**cfg, "dim": 8}))
    with pytest.raises(BackendError, match="vision_encoder.safetensors: does not match"):
        TokenUMMBackend.load(tmp_path / "m")


# -- the vision encoder ------------------------------------------------------------------------------------------
def test_vision_encoder_training_is_deterministic_for_a_seed():
    from seer.world.vision import EncoderConfig, train_encoder

    cfg = dict(dim=16, layers=1, heads=2, steps=3, batch=8, pool=24)
    a, b = (train_encoder(EncoderConfig(**cfg, seed=0)) for _ in range(2))
    c = train_encoder(EncoderConfig(**cfg, seed=1))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert not any(p.requires_grad for p in a.parameters())  # shipped frozen


def test_render_pool_labels_follow_the_renderer():
    from seer.world.render import cell_map, render
    from seer.world.vision import CELL_KINDS, render_pool

    images, local, image = render_pool(np.random.default_rng(0), 6)
    rng = np.random.default_rng(0)  # the same draws as render_pool's
    for b in range(6):
        img, spec = render(None, int(rng.integers(0, 2**31)), random_position=bool(rng.random() < 0.5))
        assert np.array_equal(img, images[b])
        kinds = [k for row in cell_map(spec) for k in row]
        assert [CELL_KINDS[i] for i in local["kind"][b].tolist()] == kinds
        for c, k in enumerate(kinds):
            assert (local["colour"][b, c] >= 0) == (k == "subject")
        for attr, vals in ATTRIBUTES.items():
            assert vals[int(image[attr][b])] == getattr(spec, attr)


# -- the corpus --------------------------------------------------------------------------------------------------
_THINK = re.compile(r"^<think> the image shows (.*) \. the instruction asks for (.*) \. instruction (yes|no) \. "
                    r"prompt (yes|no) \. </think> <answer> (yes|no) </answer>$")


def test_judge_examples_have_the_trace_format_and_a_true_answer():
    rng = np.random.default_rng(0)
    answers, instructions = Counter(), set()
    for _ in range(300):
        kind, (ctx, completion) = C.make_example("judge", rng)
        assert kind == "text" and len(ctx.images) == 1 and ctx.text.endswith(C.JUDGE_QUESTION)
        m = _THINK.match(completion)
        assert m, completion
        caption, asked, met, kept, answer = m.groups()
        instr_text = re.search(r"instruction : (.*) prompt :", ctx.text).group(1).strip()
        prompt = re.search(r"prompt : (.*) \. does", ctx.text).group(1).strip()
        instr = S.instruction(instr_text)
        instructions.add(instr.distribution)
        read = {**S.DEFAULTS, **S.parse_caption(caption)}
        assert asked == S.describe_rule(instr.rule)
        assert (met == "yes") == S.satisfies(read, instr.rule)
        assert (kept == "yes") == all(read.get(k) == v for k, v in S.prompt_attributes(prompt).items())
        assert answer == ("yes" if met == kept == "yes" else "no")
        answers[answer] += 1
    assert instructions == {"id", "ood"}
    assert 0.3 < answers["yes"] / 300 < 0.55


def test_checked_pair_prior_reads_and_checks_but_its_verdict_is_a_coin():
    rng = np.random.default_rng(1)
    follows, n_decided, phase1 = 0, 0, 0
    for _ in range(400):
        _, (ctx, completion) = C.make_example("evaluate_checked", rng)
        assert len(ctx.images) == 2 and parse_verdict(completion).ok
        checks = re.findall(r"image ([AB]) shows [^.]* \. ((?:instruction (?:yes|no) \. )?prompt (?:yes|no)) \.",
                            completion)
        assert [x for x, _ in checks] == ["A", "B"], completion
        phase1 += "instruction" not in checks[0][1]
        passes = {x: "no" not in c for x, c in checks}
        if passes["A"] != passes["B"]:
            n_decided += 1
            follows += parse_verdict(completion).answer == ("A" if passes["A"] else "B")
    assert 100 < phase1 < 220 and n_decided > 250
    assert 0.4 < follows / n_decided < 0.6  # uninformative: zero-shot pairwise accuracy stays near chance


def test_v1_vocabulary_lacks_only_the_judgement_words():
    from seer.backends.text_tokenizer import collect_words

    v1, v2 = set(collect_words(C.vocabulary_texts(judge=False))), set(collect_words(C.vocabulary_texts()))
    assert v1 < v2 and "follow" in v2 - v1


# -- the gates ---------------------------------------------------------------------------------------------------
def test_gates_compare_each_measurement_with_its_threshold():
    from seer.world.report import gates

    res = {"generation": {"per_attribute": {"colour": 0.95, "material": 0.5}},
           "gap_test": {"naive": {"hard": 0.12, "simple": 0.2}},
           "pairwise_both_orders_test": {"paper_pairs": 0.5, "two_edits": 0.7},
           "trace_rule_vs_shortcut_train": {"true_rule_on_reads": 0.9, "prefer_edited_on_reads": 0.8},
           "judgement_test": {"skipped": "not pretrained on it"}}
    g = {x["name"]: x for x in gates(res)}
    assert g["generation colour, concrete captions"]["met"] is True
    assert g["generation material, concrete captions"]["met"] is False
    assert g["naive a + p0 satisfies, Hard test"]["met"] is False
    assert g["naive a + p0 satisfies, Simple test"]["met"] is True
    assert g["zero-shot pairwise, greedy, both orders, paper-style test pairs"]["met"] is True
    assert g["zero-shot pairwise, greedy, both orders, pairs of two edits"]["met"] is False
    assert g[next(k for k in g if k.startswith("phase-2 train pairs"))]["met"] is True
    judged = g["single-image judgement, test instructions, ID (renders)"]
    assert judged["met"] is None and judged["note"] == "not pretrained on it"
    assert g["generation subject, concrete captions"]["met"] is None


def test_gate_table_counts_met_gates_and_says_why_one_is_not_measured():
    from seer.world.cli import gate_table

    table = gate_table([{"name": "a", "value": 0.97, "threshold": ">= 0.95", "met": True},
                        {"name": "b", "value": 0.5, "threshold": ">= 0.95", "met": False},
                        {"name": "c", "value": None, "threshold": ">= 0.95", "met": None, "note": "v1 base"}])
    assert "| a | 0.97 | >= 0.95 | met |" in table and "| b | 0.5 | >= 0.95 | missed |" in table
    assert "not measured (v1 base)" in table and table.endswith("1 of 3 gates met")
