"""The Janus backend on a tiny random Janus (``build_tiny_janus``: 2 text layers, 16 image tokens, 8x8 images).

Tier 3 of STYLE.md: one RLVR-style GRPO step on a two-image evaluator context and one RLMT-style step through image
generation — loss finite, θ changed, ϕ bit-identical, checkpoint round trip identical — plus the protocol's promises
(seeded sampling, scoring consistent with sampling, seeded images independent of their batch) and the bad inputs that
must fail before training. Copy this file's pattern for a new backend.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from seer.backends import janus as janus_mod
from seer.backends.base import BackendError, Context, SamplingParams, UnifiedBackend, load_backend
from seer.backends.janus import JanusBackend, build_tiny_janus, write_init_checkpoint
from seer.prompts import DEFAULT_TEMPLATES
from seer.rl.grpo import group_advantages, grpo_loss


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_janus(tmp_path_factory.mktemp("janus") / "tiny", seed=0)


def pics(seed: int, n: int = 2) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return tuple(rng.integers(0, 256, (24, 20 + 4 * i, 3), dtype=np.uint8) for i in range(n))


def evaluator_context(seed: int = 0) -> Context:
    return Context(DEFAULT_TEMPLATES.evaluator_text("make it red", "a cat"), pics(seed))


def clone_theta(backend: JanusBackend) -> list[torch.Tensor]:
    return [p.detach().clone() for p in backend.trainable_parameters()]


def clone_phi(backend: JanusBackend) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in backend.frozen_state().items()}


def grpo_step(backend: JanusBackend, contexts: list[Context], completions: list[list[int]], rewards: list[float],
              opt: torch.optim.Optimizer) -> float:
    """One GRPO update with seer.rl.grpo (μ = 1, so logp_old = logp.detach())."""
    logp, mask = backend.token_logprobs(contexts, completions)
    ref, _ = backend.token_logprobs(contexts, completions, reference=True)
    adv = group_advantages(torch.tensor([rewards]))[0]
    loss, _ = grpo_loss(logp, logp.detach(), ref, adv, mask, 0.2, 0.04)
    opt.zero_grad()
    loss.backward()
    opt.step()
    backend.after_optimizer_step()
    return float(loss.detach())


def test_protocol_and_theta_phi_split(tiny):
    b = load_backend(tiny, kind="janus")
    assert isinstance(b, UnifiedBackend) and b.kind == "janus"
    phi = b.frozen_state()
    assert phi and all(k.startswith(janus_mod.PHI_MODULES) for k in phi)
    assert {k.split(".")[1] for k in phi} == {"vqmodel", "generation_embeddings", "generation_aligner",
                                              "generation_head"}
    theta_ids = {id(p) for p in b.trainable_parameters()}
    assert not theta_ids & {id(p) for p in b.janus.model.vqmodel.parameters()}
    assert {id(p) for p in b.janus.model.vision_model.parameters()} <= theta_ids
    assert {id(p) for p in b.janus.model.language_model.parameters()} <= theta_ids
    text_only = JanusBackend.load(tiny, train_vision_encoder=False)
    assert not {id(p) for p in text_only.trainable_parameters()} & {
        id(p) for p in text_only.janus.model.vision_model.parameters()}
    info = b.describe()
    assert info["params_theta_trainable"] + info["params_phi_frozen"] == info["params_total"]
    assert info["generated_image_size"] == 8


def test_text_generation_is_seeded_for_zero_one_two_images(tiny):
    b = JanusBackend.load(tiny)
    contexts = [Context("a red cat"), Context("image A : <image> a cat", pics(1, 1)), evaluator_context()]
    sp = SamplingParams(max_new_tokens=6)
    first = b.generate_text(contexts, 3, sp, seed=7)
    again = b.generate_text(contexts, 3, sp, seed=7)
    other = b.generate_text(contexts, 3, sp, seed=8)
    assert [len(g) for g in first] == [3, 3, 3]
    ids = [[c.token_ids for c in g] for g in first]
    assert ids == [[c.token_ids for c in g] for g in again]
    assert ids != [[c.token_ids for c in g] for g in other]
    for g in first:
        for c in g:
            assert 1 <= len(c.token_ids) <= 6 and len(c.logprobs) == len(c.token_ids)
            assert c.truncated == (c.token_ids[-1] != b.eos_token_id)
            assert b.image_token_id not in c.token_ids


def test_sampling_logprobs_match_scoring_and_padding_is_neutral(tiny):
    """Logits path consistency: the sampler's log-probs (temperature 1) equal token_logprobs on the same tokens,
    whether a context is scored alone or left-padded next to a longer one."""
    b = JanusBackend.load(tiny)
    contexts = [Context("a cat"), evaluator_context(3)]
    groups = b.generate_text(contexts, 2, SamplingParams(max_new_tokens=5), seed=3)
    flat_ctx = [c for c in contexts for _ in range(2)]
    flat = [c for g in groups for c in g]
    logp, mask = b.token_logprobs(flat_ctx, [c.token_ids for c in flat])
    for i, c in enumerate(flat):
        n = len(c.token_ids)
        assert mask[i, :n].eq(1).all() and mask[i, n:].eq(0).all()
        torch.testing.assert_close(logp[i, :n].detach(), torch.tensor(c.logprobs), rtol=1e-4, atol=1e-4)
    alone, _ = b.token_logprobs(flat_ctx[:1], [flat[0].token_ids])
    torch.testing.assert_close(alone[0].detach(), logp[0, : alone.shape[1]].detach(), rtol=1e-5, atol=1e-5)


def test_images_are_seeded_batch_independent_and_decoded(tiny):
    b = JanusBackend.load(tiny, image_batch_size=3)
    images = b.generate_images(["a red cat", "a dog in the house", "a dog in the house"], [1, 2, 3])
    assert all(im.shape == (8, 8, 3) and im.dtype == np.uint8 for im in images)
    alone = b.generate_images(["a dog in the house"], [2])[0]
    assert np.array_equal(alone, images[1])  # an image depends on its prompt and seed, not its batch mates
    assert not np.array_equal(images[1], images[2])  # ... and the seed matters


def test_image_guidance_matches_a_hand_written_loop(tiny):
    """The backend's guided, seeded sampler through generate(generation_mode="image") equals the Janus recipe
    written out here (greedy, so the comparison is exact)."""
    b = JanusBackend.load(tiny, image_temperature=0.0, guidance_scale=3.0)
    with torch.no_grad():
        b.janus.model.generation_head.vision_head.weight.mul_(20.0)  # decisive argmaxes
    prompt = "a red cat"
    ids = torch.tensor([b._prompt_ids(prompt, understanding=False) + [b.boi_token_id]])
    uncond = ids.clone()
    uncond[(uncond != b.bos_token_id) & (uncond != b.boi_token_id)] = b.image_pad_token_id
    m = b.janus
    with torch.no_grad():
        embeds, past, toks = m.get_input_embeddings()(torch.cat([ids, uncond])), None, []
        for _ in range(b.num_image_tokens):
            cache = {b._cache_kw: past} if past is not None else {}
            out = m.model.language_model(inputs_embeds=embeds, use_cache=True, **cache)
            past = getattr(out, b._cache_kw)
            s = m.model.generation_head(out.last_hidden_state[:, -1])
            nxt = (s[1:] + 3.0 * (s[:1] - s[1:])).argmax(-1)
            toks.append(nxt)
            embeds = m.prepare_embeddings_for_image_generation(torch.cat([nxt, nxt])[:, None])
        want = b.decode_image_tokens(m, torch.stack(toks, 1))[0]
    assert np.array_equal(b.generate_images([prompt], [0])[0], want)


@pytest.mark.slow
def test_rlvr_step_with_two_images_and_checkpoint_round_trip(tiny, tmp_path):
    torch.manual_seed(0)
    b = JanusBackend.load(tiny)
    b.set_reference()
    ctx = evaluator_context()
    group = b.generate_text([ctx], 4, SamplingParams(max_new_tokens=6), seed=0)[0]
    ids = [c.token_ids for c in group]
    theta0, phi0 = clone_theta(b), clone_phi(b)
    ref_before, _ = b.token_logprobs([ctx] * 4, ids, reference=True)
    opt = torch.optim.AdamW(b.trainable_parameters(), lr=1e-2)
    loss = grpo_step(b, [ctx] * 4, ids, [1.0, 0.0, 1.0, 0.0], opt)
    assert np.isfinite(loss)
    assert any(not torch.equal(a, p) for a, p in zip(theta0, b.trainable_parameters(), strict=True))
    vision_moved = any(not torch.equal(p0, p) for p0, p in zip(
        theta0, b.trainable_parameters(), strict=True) if any(p is q for q in b.janus.model.vision_model.parameters()))
    assert vision_moved  # the understanding encoder is θ and got a gradient through the two images
    assert all(torch.equal(phi0[k], v) for k, v in b.frozen_state().items())
    ref_after, _ = b.token_logprobs([ctx] * 4, ids, reference=True)
    assert torch.equal(ref_before, ref_after)  # the reference is a frozen copy of the initial θ

    b.save(tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / "backend.json").read_text())
    assert meta["kind"] == "janus" and meta["base_model"] == "model"
    loaded = load_backend(tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(loaded.token_logprobs([ctx] * 4, ids)[0], b.token_logprobs([ctx] * 4, ids)[0],
                                   rtol=0, atol=0)
    sp = SamplingParams(max_new_tokens=6)
    assert [c.token_ids for c in loaded.generate_text([ctx], 2, sp, seed=5)[0]] == [
        c.token_ids for c in b.generate_text([ctx], 2, sp, seed=5)[0]]
    assert np.array_equal(loaded.generate_images(["a cat"], [4])[0], b.generate_images(["a cat"], [4])[0])


@pytest.mark.slow
def test_rlmt_step_with_lora_image_generation_and_shared_frozen_evaluator(tiny, tmp_path):
    torch.manual_seed(0)
    lora = {"r": 4, "alpha": 8}
    # an "RLVR evaluator": a LoRA adapter trained one step, saved as adapter + pointer to the base weights
    ev = JanusBackend.load(tiny, lora=lora, adapter_name="evaluator")
    ev.set_reference()
    ctx = evaluator_context()
    ids = [c.token_ids for c in ev.generate_text([ctx], 4, SamplingParams(max_new_tokens=4), seed=1)[0]]
    grpo_step(ev, [ctx] * 4, ids, [1.0, 0.0, 0.0, 1.0], torch.optim.AdamW(ev.trainable_parameters(), lr=1e-2))
    ev.save(tmp_path / "evaluator")
    assert (tmp_path / "evaluator" / "adapter" / "evaluator" / "adapter_config.json").is_file()
    assert not (tmp_path / "evaluator" / "model").exists()

    policy = JanusBackend.load(tiny, lora=lora, adapter_name="policy", train_vision_encoder=False)
    judge = JanusBackend.load(tmp_path / "evaluator", share_base_with=policy)
    assert judge.janus is policy.janus and judge.trainable_parameters() == []
    verdict_ids = [c.token_ids for c in ev.generate_text([ctx], 2, SamplingParams(max_new_tokens=4), seed=2)[0]]
    with torch.no_grad():
        judge_before = judge.token_logprobs([ctx] * 2, verdict_ids)[0]
        torch.testing.assert_close(judge_before, ev.token_logprobs([ctx] * 2, verdict_ids)[0])

    policy.set_reference()
    reprompt_ctx = Context(DEFAULT_TEMPLATES.reprompt_text("make it red", "a cat"))
    group = policy.generate_text([reprompt_ctx], 4, SamplingParams(max_new_tokens=5), seed=3)[0]
    images = policy.generate_images([c.text or "a cat" for c in group], [11, 12, 13, 14])
    x0 = policy.generate_images(["a cat"], [10])[0]
    judged = judge.generate_text([Context(DEFAULT_TEMPLATES.evaluator_text("make it red", "a cat"), (x0, x))
                                  for x in images], 1, SamplingParams(max_new_tokens=4, greedy=True))
    assert len(judged) == 4
    rewards = [float(x.mean()) / 255.0 for x in images]  # a stand-in reward with spread (random judge can't format)
    base_w = policy.janus.model.language_model.layers[0].self_attn.q_proj.base_layer.weight.detach().clone()
    theta0, phi0 = clone_theta(policy), clone_phi(policy)
    loss = grpo_step(policy, [reprompt_ctx] * 4, [c.token_ids for c in group], rewards,
                     torch.optim.AdamW(policy.trainable_parameters(), lr=1e-2))
    assert np.isfinite(loss)
    assert all("lora_" in n for n, p in policy.peft_model.named_parameters() if p.requires_grad)
    assert any(not torch.equal(a, p) for a, p in zip(theta0, policy.trainable_parameters(), strict=True))
    assert torch.equal(base_w, policy.janus.model.language_model.layers[0].self_attn.q_proj.base_layer.weight)
    assert all(torch.equal(phi0[k], v) for k, v in policy.frozen_state().items())
    with torch.no_grad():
        torch.testing.assert_close(judge.token_logprobs([ctx] * 2, verdict_ids)[0], judge_before, rtol=0, atol=0)

    policy.save(tmp_path / "policy")
    again = load_backend(tmp_path / "policy")
    with torch.no_grad():
        got = again.token_logprobs([reprompt_ctx] * 4, [c.token_ids for c in group])[0]
        want = policy.token_logprobs([reprompt_ctx] * 4, [c.token_ids for c in group])[0]
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert np.array_equal(again.generate_images(["a dog"], [1])[0], policy.generate_images(["a dog"], [1])[0])


@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8}])
def test_default_reference_is_theta_as_loaded_even_after_a_resume_overwrites_it(tiny, lora):
    b = JanusBackend.load(tiny, lora=lora)
    ctx, ids = evaluator_context(), [[20, 21, 22], [23, 24]]
    with torch.no_grad():
        at_load = b.token_logprobs([ctx] * 2, ids)[0]
        for p in b.trainable_parameters():  # what run.load_state does on --resume
            p.add_(0.05)
        assert not torch.allclose(b.token_logprobs([ctx] * 2, ids)[0], at_load)
    torch.testing.assert_close(b.token_logprobs([ctx] * 2, ids, reference=True)[0], at_load, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8}])
def test_initial_image_generator_ignores_trained_backbone(tiny, lora):
    current = JanusBackend.load(tiny, lora=lora)
    b = JanusBackend.load(tiny, lora=lora, image_generator="initial")
    before = b.generate_images(["a cat", "a dog"], [1, 2])
    with torch.no_grad():
        for backend in (b, current):
            for p in backend.trainable_parameters():
                p.add_(0.5)
    after = b.generate_images(["a cat", "a dog"], [1, 2])
    assert all(np.array_equal(x, y) for x, y in zip(before, after, strict=True))
    moved = current.generate_images(["a cat", "a dog"], [1, 2])  # the default follows the trained backbone
    assert not all(np.array_equal(x, y) for x, y in zip(before, moved, strict=True))


def test_init_checkpoint_points_at_weights_and_carries_options(tiny, tmp_path):
    out = write_init_checkpoint(tiny, tmp_path / "init", lora={"r": 2}, max_images=2)
    assert not (out / "model").exists()
    b = load_backend(out)
    assert b.options.lora.r == 2 and b.peft_model is not None
    assert janus_mod.main(["init", str(tiny), str(tmp_path / "x"), "--check"]) == 0


# ---------------------------------------------------------------- bad input: clear errors before training
def test_missing_dir_and_other_architecture(tmp_path):
    with pytest.raises(BackendError, match="does not exist"):
        JanusBackend.load(tmp_path / "nope")
    other = tmp_path / "llama"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(BackendError, match="model_type 'llama'.*not a Janus model"):
        JanusBackend.load(other)
    (other / "config.json").write_text(json.dumps({"model_type": "multi_modality"}))
    with pytest.raises(BackendError, match="original Janus format"):
        JanusBackend.load(other)
    (other / "config.json").write_text("{not json")
    with pytest.raises(BackendError, match="not valid JSON"):
        JanusBackend.load(other)


def copy_tiny(tiny, dst):
    import shutil

    shutil.copytree(tiny, dst)
    return dst


def test_config_that_cannot_generate_images(tiny, tmp_path):
    d = copy_tiny(tiny, tmp_path / "bad_cfg")
    cfg = json.loads((d / "config.json").read_text())
    cfg["vision_config"]["num_image_tokens"] = 15
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BackendError, match="num_image_tokens=15.*cannot generate"):
        JanusBackend.load(d)


def test_checkpoint_without_generation_weights(tiny, tmp_path):
    d = copy_tiny(tiny, tmp_path / "no_phi")
    weights = load_file(d / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "generation_head" not in k}, d / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(BackendError, match=r"lacks .*image generation weights"):
        JanusBackend.load(d)


def test_too_many_images_and_bad_options(tiny):
    b = JanusBackend.load(tiny)
    three = Context("<image> <image> <image> which ?", pics(0, 3))
    with pytest.raises(BackendError, match="at most max_images=2"):
        b.generate_text([three], 1, SamplingParams(max_new_tokens=2))
    with pytest.raises(BackendError, match="at most max_images=2"):
        b.check_request(3)
    with pytest.raises(BackendError, match="exceeds max_position_embeddings"):
        JanusBackend.load(tiny, max_images=40).check_request(40)
    with pytest.raises(BackendError, match="at most max_images=1"):
        JanusBackend.load(tiny, max_images=1).encode_context(evaluator_context(), "quadruplets.jsonl:3")
    with pytest.raises(BackendError, match="image prompt 1 needs"):
        b.generate_images(["a cat", " ".join(["cat"] * 600)], [0, 1])
    with pytest.raises(BackendError, match="unknown janus option"):
        JanusBackend.load(tiny, colour="red")
    with pytest.raises(BackendError, match="dtype='fp8'"):
        JanusBackend.load(tiny, dtype="fp8")


def test_bf16_and_cuda_checked_before_loading(tiny, monkeypatch):
    monkeypatch.setattr(janus_mod, "cpu_supports_bf16", lambda: False)
    with pytest.raises(BackendError, match="no native bf16"):
        JanusBackend.load(tiny, dtype="bfloat16")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="CUDA is not available"):
            JanusBackend.load(tiny, device="cuda")


def test_bf16_runs_where_supported(tiny):
    if not janus_mod.cpu_supports_bf16():
        pytest.skip("this CPU has no native bf16 (the error path is tested above)")
    b = JanusBackend.load(tiny, dtype="bfloat16")
    assert b.dtype == torch.bfloat16
    g = b.generate_text([evaluator_context()], 2, SamplingParams(max_new_tokens=3), seed=0)[0]
    logp, _ = b.token_logprobs([evaluator_context()] * 2, [c.token_ids for c in g])
    assert torch.isfinite(logp).all()


def write_quadruplets(root):
    from seer.data import Quadruplet, save_image, write_jsonl

    save_image(root / "img" / "a.png", np.full((24, 20, 3), 200, np.uint8))
    save_image(root / "img" / "b.png", np.full((20, 24, 3), 40, np.uint8))
    quads = [Quadruplet(f"q{p}", p, "make it red" if p == 2 else "", "a cat", "semantic_edit", "img/a.png",
                        "img/b.png") for p in (1, 2)]
    write_jsonl(root / "quadruplets.jsonl", quads)
    return root / "quadruplets.jsonl"


def test_seer_train_dry_run_on_raw_dir_and_init_checkpoint(tiny, tmp_path, capsys):
    from seer.cli import main

    quads = write_quadruplets(tmp_path)
    common = ["--quadruplets", str(quads), "--output_dir", str(tmp_path / "runs"), "--dry-run"]
    assert main(["train", "rlvr", "--backend", "janus", "--model", str(tiny), *common]) == 0
    out = capsys.readouterr().out
    assert "everything validated" in out and '"backend": "janus"' in out
    assert main(["train", "rlvr", "--backend", "janus", "--model", str(tiny), *common, "--max_new_tokens", "480"]) == 2
    assert "max_position_embeddings=512" in capsys.readouterr().err  # 2 x 18 image tokens + text + 480 > 512
    init = write_init_checkpoint(tiny, tmp_path / "init", lora={"r": 2}, max_images=1)
    assert main(["train", "rlvr", "--model", str(init), *common]) == 2  # evaluator contexts hold two images
    assert "at most max_images=1" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_gradient_checkpointing_gives_the_same_gradients(tiny):
    ctx, ids = evaluator_context(), [[20, 21, 22], [23, 24]]
    grads, layer_calls = [], []
    for ckpt in (False, True):
        b = JanusBackend.load(tiny, gradient_checkpointing=ckpt)
        calls = []
        layer = b.janus.model.language_model.layers[0]
        if ckpt:  # count the checkpoint calls transformers makes for this layer
            inner = layer._gradient_checkpointing_func
            layer._gradient_checkpointing_func = lambda *a, inner=inner, calls=calls, **k: calls.append(1) or inner(
                *a, **k)
        logp, mask = b.token_logprobs([ctx] * 2, ids)
        (logp * mask).sum().backward()
        grads.append([p.grad.clone() for p in b.trainable_parameters() if p.grad is not None])
        layer_calls.append(len(calls))
        assert not b.janus.training  # back in eval mode after scoring
    assert layer_calls == [0, 1]  # the layer ran under torch.utils.checkpoint only with the option on
    assert len(grads[0]) == len(grads[1]) > 0
    for a, c in zip(*grads, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-6)
