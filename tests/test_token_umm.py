"""The token-UMM backend: tokenizer, sequence formats, sampling, scoring, θ/ϕ separation, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seer.backends.base import BackendError, Context, SamplingParams, UnifiedBackend, load_backend
from seer.backends.image_tokenizer import PatchCodebook
from seer.backends.text_tokenizer import (
    SPECIAL_TOKENS,
    build_word_tokenizer,
    collect_words,
    decode,
    image_token_range,
)
from seer.backends.token_umm import TokenUMMBackend, collate, tiny_random_backend
from seer.prompts import DEFAULT_TEMPLATES, FORMAT_TAGS, parse_verdict


def _image(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _eval_ctx(seed: int = 0) -> Context:
    return Context(DEFAULT_TEMPLATES.evaluator_text("make it ice", "a cat"), (_image(seed), _image(seed + 1)))


def _reprompt_ctx(prompt: str = "a dog") -> Context:
    return Context(DEFAULT_TEMPLATES.reprompt_text("turn it into glass", prompt))


@pytest.fixture
def backend() -> TokenUMMBackend:
    return tiny_random_backend(seed=0)


# -- tokenizer ---------------------------------------------------------------------------------------------------
def test_tokenizer_round_trip_keeps_tags_and_case():
    words = collect_words(["a cat , A dog .", "B cat?"])
    assert words == ["cat", ",", ".", "?", "A", "B", "a", "dog"]  # most frequent first, then sorted
    tok = build_word_tokenizer(words, num_image_codes=4)
    text = "<think> a cat , A dog . </think> <answer> B </answer>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert decode(tok, ids) == text
    assert tok.convert_tokens_to_ids("A") != tok.convert_tokens_to_ids("a")  # case-sensitive
    # tags glued to words and punctuation glued to words still split into whole tokens
    glued = tok("<think>a cat?</think><answer>A</answer>", add_special_tokens=False)["input_ids"]
    assert decode(tok, glued) == "<think> a cat ? </think> <answer> A </answer>"
    assert parse_verdict(decode(tok, glued)).answer == "A"
    assert tok.convert_ids_to_tokens(tok("zebra", add_special_tokens=False)["input_ids"]) == ["<unk>"]
    # layout: specials, tags, words, then one contiguous image block closing the vocabulary
    vocab = tok.get_vocab()
    assert [vocab[t] for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert [vocab[t] for t in FORMAT_TAGS] == list(range(len(SPECIAL_TOKENS), len(SPECIAL_TOKENS) + len(FORMAT_TAGS)))
    start, k = image_token_range(tok)
    assert k == 4 and start + k == len(tok) == len(SPECIAL_TOKENS) + len(FORMAT_TAGS) + len(words) + 4


def test_tokenizer_rejects_bad_words():
    with pytest.raises(BackendError, match="whitespace"):
        build_word_tokenizer(["two words"], 4)
    with pytest.raises(BackendError, match="image token"):
        build_word_tokenizer(["<img_0>"], 4)


def test_tiny_backend_knows_every_template_word(backend):
    for text in (_eval_ctx().text, _reprompt_ctx().text, "<think> a </think> <answer> B </answer> none"):
        ids = backend.encode_context(Context(text.replace("<image>", "")))
        assert backend.unk_id not in ids, backend.decode_text(ids)
    assert backend.unk_id in backend.encode_context(Context("a zebra"))


# -- sequence formats --------------------------------------------------------------------------------------------
def test_sequence_formats_and_collate(backend):
    ctx = _eval_ctx()
    ids, mask = backend.encode_text_example(ctx, "<think> a </think> <answer> A </answer>")
    L = backend.image_tokenizer.tokens_per_image
    assert ids[0] == backend.bos_id and ids[-1] == backend.eos_id
    assert ids.count(backend.boi_id) == ids.count(backend.eoi_id) == 2
    assert sum(backend.image_start <= t for t in ids) == 2 * L
    sep = ids.index(backend.sep_id)
    assert mask == [0] * (sep + 1) + [1] * (len(ids) - sep - 1)
    assert backend.decode_text(ids[sep + 1 :]) == "<think> a </think> <answer> A </answer>"

    img_ids, img_mask = backend.encode_image_example("a red cat", _image(3))
    assert img_ids[:2] == [backend.bos_id, backend.gen_id] and img_ids[-1] == backend.eoi_id
    assert sum(img_mask) == L + 1 and all(t >= backend.image_start for t in img_ids[-L - 1 : -1])

    batch = collate([(ids, mask), (img_ids, img_mask)], backend.pad_id)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, max(len(ids), len(img_ids)))
    assert batch["attention_mask"][1].sum() == len(img_ids)
    assert (batch["labels"] != -100).sum() == sum(mask) + sum(img_mask)
    loss = backend.model(**batch).loss
    assert torch.isfinite(loss)


def test_context_image_of_wrong_shape_is_a_backend_error(backend):
    bad = Context("image A : <image>", (_image(0, size=8),))
    with pytest.raises(BackendError, match=r"context 1 image 0.*\(16, 16, 3\).*\(8, 8, 3\)"):
        backend.generate_text([_reprompt_ctx(), bad], 1, SamplingParams(max_new_tokens=4), seed=0)
    with pytest.raises(BackendError, match="RGB"):
        Context("<image>", (np.zeros((16, 16), np.uint8),))


# -- text sampling -----------------------------------------------------------------------------------------------
def test_generate_text_is_deterministic_for_a_seed(backend):
    assert isinstance(backend, UnifiedBackend)
    ctxs = [_eval_ctx(), _reprompt_ctx()]
    sp = SamplingParams(max_new_tokens=12)
    a = backend.generate_text(ctxs, 3, sp, seed=7)
    b = backend.generate_text(ctxs, 3, sp, seed=7)
    c = backend.generate_text(ctxs, 3, sp, seed=8)
    assert len(a) == 2 and all(len(r) == 3 for r in a)
    ids = lambda out: [[x.token_ids for x in r] for r in out]  # noqa: E731
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)
    assert a[0][0].token_ids != a[0][1].token_ids  # the n samples of one context differ
    # per-row noise and a prefill shared by the n samples: neither n nor chunking changes what a row samples
    assert [r[0] for r in ids(backend.generate_text(ctxs, 1, sp, seed=7))] == [r[0] for r in ids(a)]
    backend.max_batch = 2
    assert ids(backend.generate_text(ctxs, 3, sp, seed=7)) == ids(a)


def test_per_context_seeds_equal_one_call_per_context(backend):
    ctxs = [_eval_ctx(), _reprompt_ctx(), _reprompt_ctx("a red cat")]
    sp = SamplingParams(max_new_tokens=12)
    together = backend.generate_text(ctxs, 3, sp, seed=[5, 6, 7])
    alone = [backend.generate_text([c], 3, sp, seed=s)[0] for c, s in zip(ctxs, [5, 6, 7], strict=True)]
    assert [[x.token_ids for x in r] for r in together] == [[x.token_ids for x in r] for r in alone]
    flat = lambda out: [lp for r in out for x in r for lp in x.logprobs]  # noqa: E731
    assert flat(together) == pytest.approx(flat(alone), abs=1e-5)
    assert together[1][0].token_ids != together[2][0].token_ids or together[1][0].text != together[2][0].text
    with pytest.raises(BackendError, match="2 seeds for 3 contexts"):
        backend.generate_text(ctxs, 1, sp, seed=[1, 2])


def test_generate_text_never_samples_image_or_control_tokens(backend):
    # make image tokens and <boi> overwhelmingly likely: the restricted vocabulary must still exclude them
    with torch.no_grad():
        head = backend.model.get_output_embeddings().weight
        head[backend.image_start :] *= 50
        head[backend.boi_id] *= 50
    out = backend.generate_text([_reprompt_ctx()], 8, SamplingParams(max_new_tokens=16, temperature=2.0), seed=0)
    forbidden = {backend.pad_id, backend.unk_id, backend.bos_id, backend.sep_id, backend.gen_id, backend.boi_id,
                 backend.eoi_id}
    for c in out[0]:
        assert all(t < backend.image_start and t not in forbidden for t in c.token_ids)
        if not c.truncated:
            assert c.token_ids[-1] == backend.eos_id and backend.eos_id not in c.token_ids[:-1]
        else:
            assert len(c.token_ids) == 16 and backend.eos_id not in c.token_ids


def test_eos_stops_a_row_and_is_included(backend):
    with torch.no_grad():  # all logits 0: greedy picks the lowest allowed id, which is <eos>
        backend.model.get_output_embeddings().weight.zero_()
    out = backend.generate_text([_reprompt_ctx()], 1, SamplingParams(max_new_tokens=8, greedy=True))[0][0]
    assert out.token_ids == [backend.eos_id] and not out.truncated and out.text == ""


def test_top_k_one_is_greedy(backend):
    ctxs = [_reprompt_ctx()]
    greedy = backend.generate_text(ctxs, 1, SamplingParams(max_new_tokens=10, greedy=True), seed=0)[0][0]
    top1 = backend.generate_text(ctxs, 2, SamplingParams(max_new_tokens=10, top_k=1), seed=3)[0]
    assert all(c.token_ids == greedy.token_ids for c in top1)
    tiny_p = backend.generate_text(ctxs, 1, SamplingParams(max_new_tokens=10, top_p=1e-6), seed=5)[0][0]
    assert tiny_p.token_ids == greedy.token_ids
    for bad in (SamplingParams(top_p=0.0), SamplingParams(top_k=-1), SamplingParams(temperature=0.0)):
        with pytest.raises(BackendError):
            backend.generate_text(ctxs, 1, bad, seed=0)


def test_top_p_and_top_k_keep_samples_inside_their_sets(backend):
    ctx = _reprompt_ctx()
    with torch.no_grad():  # sharpen the random model so the nucleus is a strict subset
        backend.model.get_output_embeddings().weight.mul_(20)
    greedy = backend.generate_text([ctx], 1, SamplingParams(max_new_tokens=1, greedy=True), seed=0)[0][0]
    ids = [t for t in range(backend.num_text) if backend._allowed_text[t]]  # the sampling vocabulary
    lp, _ = backend.token_logprobs([ctx] * len(ids), [[t] for t in ids])  # first-token distribution
    probs = lp[:, 0].detach().exp()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-4)
    assert probs.max().log().item() == pytest.approx(greedy.logprobs[0], abs=1e-4)
    order = probs.argsort(descending=True)
    nucleus = {ids[i] for i in order[: int((probs[order].cumsum(0) < 0.6).sum()) + 1].tolist()}
    top3 = {ids[i] for i in order[:3].tolist()}
    assert len(nucleus) < len(ids)
    for sp, allowed in ((SamplingParams(max_new_tokens=1, top_p=0.6), nucleus),
                        (SamplingParams(max_new_tokens=1, top_k=3), top3)):
        drawn = {c.token_ids[0] for c in backend.generate_text([ctx], 48, sp, seed=1)[0]}
        assert drawn <= allowed and len(drawn) > 1


def test_sampled_logprobs_equal_recomputed(backend):
    ctxs = [_eval_ctx(), _reprompt_ctx(), _reprompt_ctx("a red bird")]
    out = backend.generate_text(ctxs, 2, SamplingParams(max_new_tokens=15, temperature=1.0), seed=11)
    flat_ctx = [c for c in ctxs for _ in range(2)]
    flat = [c for r in out for c in r]
    lp, mask = backend.token_logprobs(flat_ctx, [c.token_ids for c in flat])
    for b, c in enumerate(flat):
        n = len(c.token_ids)
        assert mask[b].sum().item() == n
        torch.testing.assert_close(lp[b, :n].detach(), torch.tensor(c.logprobs), atol=1e-4, rtol=1e-4)


def test_token_logprobs_padding_and_ragged_mask(backend):
    text = backend.tokenizer(". cat a dog red", add_special_tokens=False)["input_ids"]
    comps = [text[:3], [backend.eos_id], text[:5] + [backend.eos_id], []]
    ctxs = [_eval_ctx(), _reprompt_ctx(), _reprompt_ctx("a cat"), _reprompt_ctx()]
    lp, mask = backend.token_logprobs(ctxs, comps)
    assert lp.shape == mask.shape == (4, 6)
    assert mask.sum(1).tolist() == [3, 1, 6, 0]
    assert (lp[mask == 0] == 0).all() and (lp[mask == 1] < 0).all()
    assert lp.requires_grad
    for b in range(3):  # each row scores the same alone as in the ragged batch
        alone, _ = backend.token_logprobs([ctxs[b]], [comps[b]])
        torch.testing.assert_close(alone[0], lp[b, : len(comps[b])], atol=1e-5, rtol=1e-5)
    with pytest.raises(BackendError, match="completion 0 token 0"):
        backend.token_logprobs([ctxs[0]], [[backend.image_start]])
    with pytest.raises(BackendError, match="2 contexts but 1"):
        backend.token_logprobs(ctxs[:2], comps[:1])


def test_shared_context_prefill_matches_flat_scoring_values_and_grads(backend):
    ctxs = [_eval_ctx()] * 3 + [_reprompt_ctx()] * 2
    out = backend.generate_text([ctxs[0], ctxs[3]], 3, SamplingParams(max_new_tokens=9), seed=4)
    comps = [c.token_ids for c in out[0]] + [c.token_ids for c in out[1][:2]]

    def score(share: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        backend.share_prefix = share
        backend.model.zero_grad(set_to_none=True)
        lp, mask = backend.token_logprobs(ctxs, comps)
        (lp * mask).sum().backward()
        return lp.detach(), [p.grad.clone() for p in backend.model.parameters()]

    lp_shared, g_shared = score(True)
    lp_flat, g_flat = score(False)
    torch.testing.assert_close(lp_shared, lp_flat, atol=1e-5, rtol=1e-5)
    for a, b in zip(g_shared, g_flat, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    backend.share_prefix = True
    ref_shared, _ = backend.token_logprobs(ctxs, comps, reference=True)
    torch.testing.assert_close(ref_shared, lp_flat, atol=1e-5, rtol=1e-5)


# -- training: reference and θ/ϕ ---------------------------------------------------------------------------------
def _one_adamw_step(backend: TokenUMMBackend) -> None:
    ctxs = [_eval_ctx(), _reprompt_ctx()]
    out = backend.generate_text(ctxs, 2, SamplingParams(max_new_tokens=10), seed=0)
    flat = [c.token_ids for r in out for c in r]
    opt = torch.optim.AdamW(backend.trainable_parameters(), lr=1e-2, weight_decay=0.1)
    lp, mask = backend.token_logprobs([c for c in ctxs for _ in range(2)], flat)
    loss = -(lp * mask).sum() / mask.sum()
    loss.backward()
    for p in (backend.model.get_input_embeddings().weight, backend.model.get_output_embeddings().weight):
        assert (p.grad[backend.image_start :] == 0).all()  # the hook zeroed ϕ's rows
    opt.step()
    backend.after_optimizer_step()
    opt.zero_grad()


def test_adamw_step_changes_theta_not_phi(backend):
    theta0 = {n: p.detach().clone() for n, p in backend.model.named_parameters()}
    phi0 = backend.frozen_state()
    images0 = backend.generate_images(["a cat"], [0])
    _one_adamw_step(backend)
    phi1 = backend.frozen_state()
    assert phi0.keys() == phi1.keys() and len(phi0) == 3
    for k in phi0:
        assert torch.equal(phi0[k], phi1[k]), k
    changed = [n for n, p in backend.model.named_parameters() if not torch.equal(p, theta0[n])]
    assert "model.layers.0.self_attn.q_proj.weight" in changed and "lm_head.weight" in changed
    text_rows = backend.model.get_output_embeddings().weight[: backend.image_start]
    assert not torch.equal(text_rows, theta0["lm_head.weight"][: backend.image_start])
    assert isinstance(images0[0], np.ndarray)


def test_reference_is_unaffected_by_training(backend):
    ctxs, comps = [_reprompt_ctx()], [backend.tokenizer("a cat .", add_special_tokens=False)["input_ids"]]
    ref0, _ = backend.token_logprobs(ctxs, comps, reference=True)
    pol0, _ = backend.token_logprobs(ctxs, comps)
    torch.testing.assert_close(ref0, pol0.detach())
    assert not ref0.requires_grad
    _one_adamw_step(backend)
    ref1, _ = backend.token_logprobs(ctxs, comps, reference=True)
    pol1, _ = backend.token_logprobs(ctxs, comps)
    assert torch.equal(ref0, ref1)
    assert not torch.allclose(pol1.detach(), pol0.detach())
    backend.set_reference()
    torch.testing.assert_close(backend.token_logprobs(ctxs, comps, reference=True)[0], pol1.detach())


def test_use_train_module_routes_only_differentiable_forwards(backend):
    class Wrapper(torch.nn.Module):  # stands in for DDP: same parameters, counts its forwards
        def __init__(self, module: torch.nn.Module):
            super().__init__()
            self.module, self.calls = module, 0

        def forward(self, **kwargs):
            self.calls += 1
            return self.module(**kwargs)

    assert backend.train_module() is backend.model
    ctxs = [_reprompt_ctx()] * 2
    comps = [c.token_ids for c in backend.generate_text(ctxs[:1], 2, SamplingParams(max_new_tokens=6), seed=0)[0]]
    before, _ = backend.token_logprobs(ctxs, comps)
    wrapper = Wrapper(backend.train_module())
    backend.use_train_module(wrapper)
    after, _ = backend.token_logprobs(ctxs, comps)
    assert wrapper.calls == 1  # one forward per call: a DDP wrapper must not see two before a backward
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    backend.token_logprobs(ctxs, comps, reference=True)
    backend.generate_text(ctxs[:1], 1, SamplingParams(max_new_tokens=4), seed=0)
    backend.generate_images(["a cat"], [0])
    assert wrapper.calls == 1


def test_model_summary_counts_theta_and_phi(backend):
    s = backend.model_summary()
    total = sum(p.numel() for p in backend.model.parameters())
    assert s["theta_params"] + s["phi_model_rows"] == total
    assert s["phi_model_rows"] == 2 * 32 * 32 and s["phi_image_tokenizer"] == 32 * 4 * 4 * 3


# -- images ------------------------------------------------------------------------------------------------------
def test_generate_images_draws_only_image_tokens(backend):
    with torch.no_grad():  # make text tokens overwhelmingly likely: image sampling must ignore them
        backend.model.get_output_embeddings().weight[: backend.image_start] *= 50
    seen = []
    decode_codes = backend.image_tokenizer.decode
    backend.image_tokenizer.decode = lambda codes: (seen.append(np.asarray(codes)), decode_codes(codes))[1]
    images = backend.generate_images(["a cat", "a big red dog"], [0, 1])
    assert [im.shape for im in images] == [(16, 16, 3)] * 2 and images[0].dtype == np.uint8
    codes = np.concatenate(seen)
    assert codes.shape == (2, 16) and codes.min() >= 0 and codes.max() < 32
    assert len(np.unique(codes)) > 1  # sampled, not a constant


def test_image_depends_only_on_its_prompt_and_seed(backend):
    # equal-length prompts, so padding (and its float noise) is identical whatever the batch
    a = backend.generate_images(["a cat", "a dog", "a cup"], [1, 2, 3])
    b = backend.generate_images(["a cup", "a bird", "a cat"], [3, 9, 1])
    assert np.array_equal(a[0], b[2]) and np.array_equal(a[2], b[0])
    backend.max_batch = 1
    c = backend.generate_images(["a dog"], [2])
    assert np.array_equal(a[1], c[0])
    d = backend.generate_images(["a dog", "a dog"], [2, 4])
    assert np.array_equal(d[0], a[1]) and not np.array_equal(d[0], d[1])


def test_classifier_free_guidance_is_per_row_and_changes_images(backend):
    plain = backend.generate_images(["a cat", "a dog"], [1, 2])
    backend.image_cfg_scale = 3.0
    guided = backend.generate_images(["a cat", "a dog"], [1, 2])
    assert not all(np.array_equal(x, y) for x, y in zip(plain, guided, strict=True))
    assert np.array_equal(backend.generate_images(["a dog", "a cup"], [2, 7])[0], guided[1])
    assert np.array_equal(backend.generate_images(["a cat"], [1])[0], guided[0])
    with pytest.raises(BackendError, match="image_cfg_scale"):
        tiny_random_backend(image_cfg_scale=0.5)


# -- persistence -------------------------------------------------------------------------------------------------
def test_save_load_round_trip(backend, tmp_path):
    _one_adamw_step(backend)  # a trained state, not the seed's init
    backend.save(tmp_path / "ckpt")
    loaded = load_backend(tmp_path / "ckpt")
    assert isinstance(loaded, TokenUMMBackend)
    ctxs = [_eval_ctx(), _reprompt_ctx()]
    comps = [c.token_ids for r in backend.generate_text(ctxs, 1, SamplingParams(max_new_tokens=8), seed=2) for c in r]
    assert torch.equal(backend.token_logprobs(ctxs, comps)[0], loaded.token_logprobs(ctxs, comps)[0])
    prompts, seeds = ["a cat", "a red dog"], [5, 6]
    for x, y in zip(backend.generate_images(prompts, seeds), loaded.generate_images(prompts, seeds), strict=True):
        assert np.array_equal(x, y)
    for k, v in backend.frozen_state().items():
        assert torch.equal(v, loaded.frozen_state()[k])
    meta = json.loads((tmp_path / "ckpt" / "backend.json").read_text())
    assert meta["kind"] == "token_umm" and meta["tokens_per_image"] == 16 and meta["num_image_codes"] == 32


def test_load_rejects_mismatched_checkpoints(backend, tmp_path):
    ckpt = tmp_path / "ckpt"
    backend.save(ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["vocab_size"] += 1
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BackendError, match=r"tokenizer\.json.*vocab_size"):
        TokenUMMBackend.load(ckpt)

    backend.save(ckpt)
    PatchCodebook.random(16, (16, 16), 4).save(ckpt)
    with pytest.raises(BackendError, match=r"image_tokenizer\.npz.*16 codes"):
        TokenUMMBackend.load(ckpt)

    backend.save(ckpt)
    meta = json.loads((ckpt / "backend.json").read_text())
    meta["tokens_per_image"] = 64
    (ckpt / "backend.json").write_text(json.dumps(meta))
    with pytest.raises(BackendError, match=r"backend\.json.*tokens_per_image"):
        TokenUMMBackend.load(ckpt)

    backend.save(ckpt)
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(BackendError, match=r"model\.safetensors: missing"):
        TokenUMMBackend.load(ckpt)


def test_bfloat16_autocast_runs(backend):
    backend.dtype = "bfloat16"
    out = backend.generate_text([_reprompt_ctx()], 2, SamplingParams(max_new_tokens=6), seed=0)
    lp, mask = backend.token_logprobs([_reprompt_ctx()] * 2, [c.token_ids for c in out[0]])
    assert lp.dtype == torch.float32 and torch.isfinite(lp).all()
    assert len(backend.generate_images(["a cat"], [0])) == 1
