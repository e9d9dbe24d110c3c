"""The Harmon backend on a tiny random Harmon (``build_tiny_harmon``: 2-layer Qwen2, 1+1-block MAR with 4 buffer
slots, 16x16 images = 16 latent tokens, 20 slots per understood image).

The protocol's promises (seeded sampling, scoring equal to sampling, seeded images independent of their batch), the
evaluator's two-image context, θ/ϕ split, one GRPO step with ϕ bit-identical and a checkpoint round trip, LoRA,
the key map from the official checkpoint names, and the bad inputs that must fail with a clear error.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from seer.backends import harmon as harmon_mod
from seer.backends.base import BackendError, Context, SamplingParams, UnifiedBackend, load_backend
from seer.backends.harmon import HarmonBackend, build_tiny_harmon, write_init_checkpoint
from seer.backends.harmon_model import (
    HARMON_UNUSED,
    HarmonModel,
    load_state,
    materialize,
    official_to_seer,
    tied_names,
)
from seer.prompts import DEFAULT_TEMPLATES
from seer.rl.grpo import group_advantages, grpo_loss


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_harmon(tmp_path_factory.mktemp("harmon") / "tiny", seed=0)


@pytest.fixture(scope="module")
def backend(tiny):
    return HarmonBackend.load(tiny)


def pics(seed: int, n: int = 2) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return tuple(rng.integers(0, 256, (24, 20 + 4 * i, 3), dtype=np.uint8) for i in range(n))


def evaluator_context(seed: int = 0) -> Context:
    return Context(DEFAULT_TEMPLATES.evaluator_text("make it red", "a cat"), pics(seed))


def grpo_step(b, contexts, completions, rewards, opt) -> float:
    logp, mask = b.token_logprobs(contexts, completions)
    ref, _ = b.token_logprobs(contexts, completions, reference=True)
    adv = group_advantages(torch.tensor([rewards]))[0]
    loss, _ = grpo_loss(logp, logp.detach(), ref, adv, mask, 0.2, 0.04)
    opt.zero_grad()
    loss.backward()
    opt.step()
    b.after_optimizer_step()
    return float(loss.detach())


# ---------------------------------------------------------------- protocol, θ / ϕ
def test_protocol_and_theta_phi_split(tiny, backend):
    b = load_backend(tiny, kind="harmon")
    assert isinstance(b, UnifiedBackend) and b.kind == "harmon"
    phi = b.frozen_state()
    assert {k.split(".")[0] for k in phi} == {"vae", "diffusion_head", "proj_out", "mar"}
    assert {k.split(".")[1] for k in phi if k.startswith("mar.")} == {
        "fake_latent", "decoder_embed", "mask_token", "decoder_pos_embed_learned", "decoder_blocks", "decoder_norm",
        "diffusion_pos_embed_learned"}
    m = b.model
    theta = {id(p) for p in b.trainable_parameters()}
    for module in (m.language_model, m.proj_in, m.mar.encoder_blocks, m.mar.z_proj):
        assert {id(p) for p in module.parameters()} <= theta
    for module in (m.vae, m.diffusion_head, m.proj_out, m.mar.decoder_blocks):
        assert not {id(p) for p in module.parameters()} & theta
    assert id(m.mar.fake_latent) not in theta and id(m.mar.encoder_pos_embed_learned) in theta
    info = b.describe()
    assert info["params_theta_trainable"] + info["params_phi_frozen"] == info["params_total"]
    assert info["num_image_tokens"] == 20 and info["generated_image_size"] == 16
    no_enc = HarmonBackend.load(tiny, train_mar_encoder=False)
    assert not {id(p) for p in no_enc.trainable_parameters()} & {id(p) for p in no_enc.model.mar.parameters()}
    assert {id(p) for p in no_enc.model.proj_in.parameters()} <= {id(p) for p in no_enc.trainable_parameters()}


def test_text_generation_is_seeded_for_zero_one_two_images(backend):
    b = backend
    contexts = [Context("a red cat"), Context("image A : <image> a cat", pics(1, 1)), evaluator_context()]
    sp = SamplingParams(max_new_tokens=6)
    first = b.generate_text(contexts, 3, sp, seed=7)
    ids = [[c.token_ids for c in g] for g in first]
    assert ids == [[c.token_ids for c in g] for g in b.generate_text(contexts, 3, sp, seed=7)]
    assert ids != [[c.token_ids for c in g] for g in b.generate_text(contexts, 3, sp, seed=8)]
    for g in first:
        for c in g:
            assert 1 <= len(c.token_ids) <= 6 and len(c.logprobs) == len(c.token_ids)
            assert c.truncated == (c.token_ids[-1] != b.eos_token_id)
            assert b.image_token_id not in c.token_ids
    # per-context seeds: context i's completions are those of context i alone with seed[i]
    per = b.generate_text(contexts, 2, sp, seed=[5, 6, 7])
    alone = b.generate_text([contexts[2]], 2, sp, seed=[7])
    assert [c.token_ids for c in per[2]] == [c.token_ids for c in alone[0]]


def test_the_images_change_what_the_model_reads(backend):
    """The two images of the evaluator context reach the language model, in order: other images or the same two
    swapped give other log-probs (the tiny random model is weakly sensitive to its inputs: differences ~1e-4)."""
    ids = [[20, 21, 22]]
    black, white = np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 255, np.uint8)
    text = evaluator_context().text
    with torch.no_grad():
        a = backend.token_logprobs([Context(text, (black, white))], ids)[0]
        b = backend.token_logprobs([evaluator_context(1)], ids)[0]
        c = backend.token_logprobs([Context(text, (white, black))], ids)[0]
        again = backend.token_logprobs([Context(text, (black, white))], ids)[0]
    assert torch.equal(a, again)
    assert (a - b).abs().max() > 1e-5 and (a - c).abs().max() > 1e-5


def test_sampling_logprobs_match_scoring_and_padding_is_neutral(backend):
    b = backend
    contexts = [Context("a cat"), evaluator_context(3), Context("<image> a dog", pics(4, 1))]
    groups = b.generate_text(contexts, 2, SamplingParams(max_new_tokens=5), seed=3)
    flat_ctx = [c for c in contexts for _ in range(2)]
    flat = [c for g in groups for c in g]
    with torch.no_grad():
        logp, mask = b.token_logprobs(flat_ctx, [c.token_ids for c in flat])  # 0, 2 and 1 images mixed
    for i, c in enumerate(flat):
        n = len(c.token_ids)
        assert mask[i, :n].eq(1).all() and mask[i, n:].eq(0).all()
        torch.testing.assert_close(logp[i, :n], torch.tensor(c.logprobs), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        alone, _ = b.token_logprobs(flat_ctx[2:3], [flat[2].token_ids])
    torch.testing.assert_close(alone[0], logp[2, : alone.shape[1]], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- images
def test_images_are_seeded_batch_independent_and_decoded(tiny):
    b = HarmonBackend.load(tiny, image_batch_size=3)
    images = b.generate_images(["a red cat", "a dog in the house", "a dog in the house"], [1, 2, 3])
    assert all(im.shape == (16, 16, 3) and im.dtype == np.uint8 for im in images)
    alone = b.generate_images(["a dog in the house"], [2])[0]
    assert np.array_equal(alone, images[1])  # an image depends on its prompt and seed, not its batch mates
    assert not np.array_equal(images[1], images[2])  # ... and the seed matters
    again = HarmonBackend.load(tiny, image_batch_size=1).generate_images(["a red cat"], [1])[0]
    assert np.array_equal(again, images[0])  # batch size 1 vs 3: the same image
    other_prompt = b.generate_images(["a blue house"], [1])[0]
    assert not np.array_equal(other_prompt, images[0])  # the prompt reaches the image through the LM


def test_guidance_and_generation_steps_matter(tiny):
    base = HarmonBackend.load(tiny).generate_images(["a red cat"], [4])[0]
    for change in ({"guidance_scale": 1.0}, {"num_iter": 2}, {"cfg_schedule": "linear"}, {"image_temperature": 0.5}):
        img = HarmonBackend.load(tiny, **change).generate_images(["a red cat"], [4])[0]
        assert not np.array_equal(img, base), change
    big = HarmonBackend.load(tiny, image_size=24).generate_images(["a red cat"], [4])[0]  # 6x6 tokens, tables resized
    assert big.shape == (24, 24, 3)


def test_generation_loop_unmasks_every_token_once(tiny, monkeypatch):
    """Count the latents the diffusion head samples per MAR step: the cosine schedule's sizes, summing to all 16
    tokens, and one order per image."""
    b = HarmonBackend.load(tiny, num_iter=4)
    seen = []
    real = harmon_mod.sample_latents

    def spy(head, schedule, cond, uncond, cfg, temperature, counts, generators):
        seen.append(list(counts))
        assert uncond is not None and uncond.shape == cond.shape
        return real(head, schedule, cond, uncond, cfg, temperature, counts, generators)

    monkeypatch.setattr(harmon_mod, "sample_latents", spy)
    b.generate_images(["a cat", "a dog"], [0, 1])
    # 16 tokens, 4 steps: masked after each step = floor(16 cos(pi/2 * k/4)) = 14, 11, 6, then the rest
    assert seen == [[2, 2], [3, 3], [5, 5], [6, 6]]


# ---------------------------------------------------------------- training step, save / load
def clone_theta(b):
    return [p.detach().clone() for p in b.trainable_parameters()]


def test_rlvr_step_with_two_images_and_checkpoint_round_trip(tiny, tmp_path):
    torch.manual_seed(0)
    b = HarmonBackend.load(tiny)
    ctx = evaluator_context()
    ids = [c.token_ids for c in b.generate_text([ctx], 4, SamplingParams(max_new_tokens=6), seed=0)[0]]
    theta0 = clone_theta(b)
    phi0 = {k: v.clone() for k, v in b.frozen_state().items()}
    with torch.no_grad():
        ref_before = b.token_logprobs([ctx] * 4, ids, reference=True)[0]
    loss = grpo_step(b, [ctx] * 4, ids, [1.0, 0.0, 1.0, 0.0], torch.optim.AdamW(b.trainable_parameters(), lr=1e-2))
    assert np.isfinite(loss)
    moved = [not torch.equal(a, p) for a, p in zip(theta0, b.trainable_parameters(), strict=True)]
    assert any(moved)
    enc = {id(p) for p in b.model.mar.encoder_blocks.parameters()}
    assert any(m for m, p in zip(moved, b.trainable_parameters(), strict=True) if id(p) in enc)  # via the images
    assert all(torch.equal(phi0[k], v) for k, v in b.frozen_state().items())  # ϕ bit-identical
    with torch.no_grad():
        torch.testing.assert_close(b.token_logprobs([ctx] * 4, ids, reference=True)[0], ref_before, rtol=0, atol=0)

    b.save(tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / "backend.json").read_text())
    assert meta["kind"] == "harmon" and meta["base_model"] == "model"
    loaded = load_backend(tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(loaded.token_logprobs([ctx] * 4, ids)[0], b.token_logprobs([ctx] * 4, ids)[0],
                                   rtol=0, atol=0)
    sp = SamplingParams(max_new_tokens=6)
    assert [c.token_ids for c in loaded.generate_text([ctx], 2, sp, seed=5)[0]] == [
        c.token_ids for c in b.generate_text([ctx], 2, sp, seed=5)[0]]
    assert np.array_equal(loaded.generate_images(["a cat"], [4])[0], b.generate_images(["a cat"], [4])[0])
    # images follow the trained θ (image_generator: current), not the weights as loaded
    assert not np.array_equal(b.generate_images(["a cat"], [4])[0],
                              HarmonBackend.load(tiny).generate_images(["a cat"], [4])[0])


def test_default_reference_is_theta_as_loaded_even_after_a_resume_overwrites_it(tiny):
    b = HarmonBackend.load(tiny)
    ctx, ids = evaluator_context(), [[20, 21, 22], [23, 24]]
    with torch.no_grad():
        at_load = b.token_logprobs([ctx] * 2, ids)[0]
        for p in b.trainable_parameters():
            p.add_(0.05)
        assert not torch.allclose(b.token_logprobs([ctx] * 2, ids)[0], at_load)
        torch.testing.assert_close(b.token_logprobs([ctx] * 2, ids, reference=True)[0], at_load, rtol=1e-5,
                                   atol=1e-6)


def test_lora_step_saves_the_adapter_and_round_trips(tiny, tmp_path):
    torch.manual_seed(0)
    b = HarmonBackend.load(tiny, lora={"r": 4, "alpha": 8}, adapter_name="policy", train_mar_encoder=False)
    assert b.trainable_parameters() and all("lora_" in n for n, p in b.peft_model.named_parameters()
                                            if p.requires_grad)
    ctx = Context(DEFAULT_TEMPLATES.reprompt_text("make it red", "a cat"))
    group = b.generate_text([ctx], 4, SamplingParams(max_new_tokens=5), seed=3)[0]
    images = b.generate_images([c.text or "a cat" for c in group], [1, 2, 3, 4])
    base_w = b.model.language_model.model.layers[0].self_attn.q_proj.base_layer.weight.detach().clone()
    phi0 = {k: v.clone() for k, v in b.frozen_state().items()}
    theta0 = clone_theta(b)
    rewards = [float(x.mean()) / 255.0 for x in images]
    loss = grpo_step(b, [ctx] * 4, [c.token_ids for c in group], rewards,
                     torch.optim.AdamW(b.trainable_parameters(), lr=1e-2))
    assert np.isfinite(loss)
    assert any(not torch.equal(a, p) for a, p in zip(theta0, b.trainable_parameters(), strict=True))
    assert torch.equal(base_w, b.model.language_model.model.layers[0].self_attn.q_proj.base_layer.weight)
    assert all(torch.equal(phi0[k], v) for k, v in b.frozen_state().items())
    b.save(tmp_path / "policy")
    assert (tmp_path / "policy" / "adapter" / "policy" / "adapter_config.json").is_file()
    assert not (tmp_path / "policy" / "model").exists()
    again = load_backend(tmp_path / "policy")
    ids = [c.token_ids for c in group]
    with torch.no_grad():
        torch.testing.assert_close(again.token_logprobs([ctx] * 4, ids)[0], b.token_logprobs([ctx] * 4, ids)[0],
                                   rtol=0, atol=0)
    assert np.array_equal(again.generate_images(["a dog"], [1])[0], b.generate_images(["a dog"], [1])[0])


def test_bf16_with_float32_master_weights(tiny, monkeypatch):
    """dtype bfloat16 + master_weights float32: θ (and so AdamW's state) float32, ϕ bf16, forwards autocast; on a
    CPU without native bf16 the check is bypassed and torch's emulated bf16 kernels run (slow, same rounding)."""
    if not harmon_mod.cpu_supports_bf16():
        with pytest.raises(BackendError, match="no native bf16"):
            HarmonBackend.load(tiny, dtype="bfloat16")
        monkeypatch.setattr(harmon_mod, "cpu_supports_bf16", lambda: True)
    b = HarmonBackend.load(tiny, dtype="bfloat16", master_weights="float32")
    assert b.precision() == {"weights": "bfloat16", "theta": "float32", "optimizer_state": "float32",
                             "compute": "bfloat16"}
    assert {t.dtype for t in b.frozen_state().values()} == {torch.bfloat16}
    ctx = evaluator_context()
    g = b.generate_text([ctx], 2, SamplingParams(max_new_tokens=3), seed=0)[0]
    logp, mask = b.token_logprobs([ctx] * 2, [c.token_ids for c in g])
    (logp * mask).sum().backward()
    assert torch.isfinite(logp).all() and all(p.grad is not None for p in b.trainable_parameters())
    assert b.generate_images(["a cat"], [0])[0].shape == (16, 16, 3)


# ---------------------------------------------------------------- the key map
def official_names(model: HarmonModel) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """The parameter names and shapes of Harmon's released files for ``model``'s configuration, written out from
    the released layout (``harmon_*.pth``: llm.*, mar.* with MAR's class table and ``mar.diffloss.net.*``,
    proj_in/proj_out; ``kl16.ckpt``: the VAE's own names), not from seer's key map."""
    cfg, vc = model.mar_cfg, model.vae_cfg
    e, d, w = cfg.encoder_embed_dim, cfg.decoder_embed_dim, cfg.diffloss_w
    n = cfg.seq_side ** 2
    h = model.language_model.config.hidden_size
    names: dict[str, tuple[int, ...]] = {}
    for k, v in model.language_model.state_dict().items():  # transformers' own Qwen2 names, under "llm."
        names["llm." + k] = tuple(v.shape)

    def block(prefix: str, dim: int) -> None:
        hid = int(dim * cfg.mlp_ratio)
        for part, shape in (("norm1.weight", (dim,)), ("norm1.bias", (dim,)), ("attn.qkv.weight", (3 * dim, dim)),
                            ("attn.qkv.bias", (3 * dim,)), ("attn.proj.weight", (dim, dim)), ("attn.proj.bias", (dim,)),
                            ("norm2.weight", (dim,)), ("norm2.bias", (dim,)), ("mlp.fc1.weight", (hid, dim)),
                            ("mlp.fc1.bias", (hid,)), ("mlp.fc2.weight", (dim, hid)), ("mlp.fc2.bias", (dim,))):
            names[f"{prefix}.{part}"] = shape

    def linear(prefix: str, cout: int, cin: int) -> None:
        names[prefix + ".weight"], names[prefix + ".bias"] = (cout, cin), (cout,)

    names["mar.class_emb.weight"] = (cfg.class_num, e)
    names["mar.fake_latent"] = (1, e)
    linear("mar.z_proj", e, cfg.token_dim)
    names["mar.z_proj_ln.weight"] = names["mar.z_proj_ln.bias"] = (e,)
    names["mar.encoder_pos_embed_learned"] = (1, n + cfg.buffer_size, e)
    for i in range(cfg.encoder_depth):
        block(f"mar.encoder_blocks.{i}", e)
    names["mar.encoder_norm.weight"] = names["mar.encoder_norm.bias"] = (e,)
    linear("mar.decoder_embed", d, e)
    names["mar.mask_token"] = (1, 1, d)
    names["mar.decoder_pos_embed_learned"] = (1, n + cfg.buffer_size, d)
    for i in range(cfg.decoder_depth):
        block(f"mar.decoder_blocks.{i}", d)
    names["mar.decoder_norm.weight"] = names["mar.decoder_norm.bias"] = (d,)
    names["mar.diffusion_pos_embed_learned"] = (1, n, d)
    net = "mar.diffloss.net"
    linear(f"{net}.time_embed.mlp.0", w, 256)
    linear(f"{net}.time_embed.mlp.2", w, w)
    linear(f"{net}.cond_embed", w, d)
    linear(f"{net}.input_proj", w, cfg.token_dim)
    for i in range(cfg.diffloss_d):
        names[f"{net}.res_blocks.{i}.in_ln.weight"] = names[f"{net}.res_blocks.{i}.in_ln.bias"] = (w,)
        linear(f"{net}.res_blocks.{i}.mlp.0", w, w)
        linear(f"{net}.res_blocks.{i}.mlp.2", w, w)
        linear(f"{net}.res_blocks.{i}.adaLN_modulation.1", 3 * w, w)
    linear(f"{net}.final_layer.linear", 2 * cfg.token_dim, w)
    linear(f"{net}.final_layer.adaLN_modulation.1", 2 * w, w)
    linear("proj_in.0", h, e)
    linear("proj_in.2", h, h)
    linear("proj_out.0", h, h)
    linear("proj_out.2", e, h)

    vae: dict[str, tuple[int, ...]] = {}

    def conv(prefix: str, cout: int, cin: int, k: int) -> None:
        vae[prefix + ".weight"], vae[prefix + ".bias"] = (cout, cin, k, k), (cout,)

    def gn(prefix: str, ch: int) -> None:
        vae[prefix + ".weight"] = vae[prefix + ".bias"] = (ch,)

    def res(prefix: str, cin: int, cout: int) -> None:
        gn(f"{prefix}.norm1", cin)
        conv(f"{prefix}.conv1", cout, cin, 3)
        gn(f"{prefix}.norm2", cout)
        conv(f"{prefix}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{prefix}.nin_shortcut", cout, cin, 1)

    def attn(prefix: str, ch: int) -> None:
        gn(f"{prefix}.norm", ch)
        for m in ("q", "k", "v", "proj_out"):
            conv(f"{prefix}.{m}", ch, ch, 1)

    ch, mult = vc.ch, vc.ch_mult
    conv("encoder.conv_in", ch, 3, 3)
    cin, res_now = ch, vc.resolution
    for i, m in enumerate(mult):
        for j in range(vc.num_res_blocks):
            res(f"encoder.down.{i}.block.{j}", cin, ch * m)
            cin = ch * m
            if res_now in vc.attn_resolutions:
                attn(f"encoder.down.{i}.attn.{j}", cin)
        if i != len(mult) - 1:
            conv(f"encoder.down.{i}.downsample.conv", cin, cin, 3)
            res_now //= 2
    for side in ("encoder", "decoder"):
        top = ch * mult[-1]
        res(f"{side}.mid.block_1", top, top)
        attn(f"{side}.mid.attn_1", top)
        res(f"{side}.mid.block_2", top, top)
    gn("encoder.norm_out", cin)
    conv("encoder.conv_out", 2 * vc.embed_dim, cin, 3)
    conv("decoder.conv_in", ch * mult[-1], vc.embed_dim, 3)
    cin = ch * mult[-1]
    for i in reversed(range(len(mult))):
        for j in range(vc.num_res_blocks + 1):
            res(f"decoder.up.{i}.block.{j}", cin, ch * mult[i])
            cin = ch * mult[i]
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", cin, cin, 3)
    gn("decoder.norm_out", cin)
    conv("decoder.conv_out", 3, cin, 3)
    conv("quant_conv", 2 * vc.embed_dim, 2 * vc.embed_dim, 1)
    conv("post_quant_conv", vc.embed_dim, vc.embed_dim, 1)
    return names, vae


def official_state(model: HarmonModel, seed: int = 0):
    names, vae = official_names(model)
    g = torch.Generator().manual_seed(seed)
    harmon_sd = {k: torch.randn(s, generator=g) for k, s in names.items()}
    vae_sd = {k: torch.randn(s, generator=g) for k, s in vae.items()}
    vae_sd["loss.logvar"] = torch.zeros(())  # kl16.ckpt may carry training-only entries
    return harmon_sd, vae_sd


def fresh(tiny) -> HarmonModel:
    cfg = json.loads((tiny / "harmon.json").read_text())
    with torch.device("meta"):
        model = HarmonModel(cfg)
    return materialize(model)


def test_key_map_covers_every_parameter_of_the_official_layout(tiny):
    model = fresh(tiny)
    harmon_sd, vae_sd = official_state(model)
    state, dropped = official_to_seer(harmon_sd, vae_sd)
    assert sorted(dropped) == sorted([*HARMON_UNUSED, "loss.logvar"])
    own = {k for k in model.state_dict() if k not in tied_names(model)}
    assert set(state) - {"language_model.lm_head.weight"} == own  # every seer parameter has exactly one source
    load_state(model, state, "official")
    assert torch.equal(model.diffusion_head.res_blocks[1].adaLN_modulation[1].weight,
                       harmon_sd["mar.diffloss.net.res_blocks.1.adaLN_modulation.1.weight"])
    assert torch.equal(model.vae.encoder.down[2].attn[0].q.weight, vae_sd["encoder.down.2.attn.0.q.weight"])
    assert torch.equal(model.mar.encoder_blocks[0].attn.qkv.weight, harmon_sd["mar.encoder_blocks.0.attn.qkv.weight"])
    assert torch.equal(model.language_model.model.embed_tokens.weight, harmon_sd["llm.model.embed_tokens.weight"])
    assert model.language_model.lm_head.weight is model.language_model.model.embed_tokens.weight  # still tied


def test_key_map_errors_name_the_parameter(tiny):
    model = fresh(tiny)
    harmon_sd, vae_sd = official_state(model)
    with pytest.raises(BackendError, match="ckpt: parameter 'something_else' is not a Harmon parameter"):
        official_to_seer({**harmon_sd, "something_else": torch.zeros(1)}, vae_sd, "ckpt")
    state, _ = official_to_seer(harmon_sd, vae_sd)
    missing = dict(state)
    del missing["mar.decoder_blocks.0.mlp.fc2.bias"]
    with pytest.raises(BackendError, match=r"x: missing parameter 'mar.decoder_blocks.0.mlp.fc2.bias'"):
        load_state(fresh(tiny), missing, "x")
    bad = dict(state)
    bad["proj_in.0.weight"] = torch.zeros(3, 3)
    with pytest.raises(BackendError, match=r"'proj_in.0.weight' has shape \(3, 3\), the config expects \(32, 32\)"):
        load_state(fresh(tiny), bad, "x")
    with pytest.raises(BackendError, match="unexpected parameter 'vae.extra'"):
        load_state(fresh(tiny), {**state, "vae.extra": torch.zeros(1)}, "x")


def test_convert_from_official_files_round_trips(tiny, tmp_path):
    """``convert`` on files laid out as the released ones (a .pth state dict, kl16.ckpt's {"model": ...} and a
    Qwen2 directory) gives a directory whose weights are the files' and whose MAR config is read from shapes."""
    model = fresh(tiny)
    harmon_sd, vae_sd = official_state(model, seed=3)
    torch.save(harmon_sd, tmp_path / "harmon.pth")
    torch.save({"model": vae_sd}, tmp_path / "kl16.ckpt")
    qwen = tmp_path / "qwen"
    qwen.mkdir()
    cfg = json.loads((tiny / "harmon.json").read_text())
    (qwen / "config.json").write_text(json.dumps(cfg["llm"]))
    for f in tiny.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, qwen / f.name)
    with pytest.raises(BackendError, match="MAR width 32/32 is none of"):  # the tiny MAR is no released size
        harmon_mod.convert_official(tmp_path / "harmon.pth", tmp_path / "kl16.ckpt", qwen, tmp_path / "out")
    from seer.backends.harmon_modules import VAEConfig

    vae_cfg = VAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["vae"].items()})
    out = harmon_mod.convert_official(tmp_path / "harmon.pth", tmp_path / "kl16.ckpt", qwen, tmp_path / "out",
                                      mar_heads=4, vae_config=vae_cfg, vae_scale=cfg["vae_scale"])
    # the converted directory carries Harmon's sampling settings (512 px, 64 steps): too big for this tiny LM
    with pytest.raises(BackendError, match="image prompt 0 needs 16400 positions"):
        HarmonBackend.load(out).generate_images(["a cat"], [0])
    converted = HarmonBackend.load(out, image_size=16, understanding_image_size=16, num_iter=4, diffusion_steps=8)
    # depths, widths, buffer and image size read from the shapes (sampling steps: Harmon's 100, a run option)
    assert converted.model.mar_cfg == replace(model.mar_cfg, num_sampling_steps=100)
    sd = converted.model.state_dict()
    assert torch.equal(sd["mar.decoder_blocks.0.attn.proj.weight"], harmon_sd["mar.decoder_blocks.0.attn.proj.weight"])
    assert torch.equal(sd["vae.decoder.up.1.upsample.conv.bias"], vae_sd["decoder.up.1.upsample.conv.bias"])
    assert json.loads((out / "conversion.json").read_text())["dropped"] == ["mar.class_emb.weight", "loss.logvar"]
    assert converted.generate_images(["a cat"], [0])[0].shape == (16, 16, 3)
    with pytest.raises(BackendError, match="bad.pth: missing parameter 'mar.z_proj.weight'"):
        torch.save({k: v for k, v in harmon_sd.items() if k != "mar.z_proj.weight"}, tmp_path / "bad.pth")
        harmon_mod.convert_official(tmp_path / "bad.pth", tmp_path / "kl16.ckpt", qwen, tmp_path / "out")
    with pytest.raises(BackendError, match="cannot read the KL-16 VAE checkpoint"):
        (tmp_path / "junk.ckpt").write_text("not a checkpoint")
        harmon_mod.convert_official(tmp_path / "harmon.pth", tmp_path / "junk.ckpt", qwen, tmp_path / "out")


# ---------------------------------------------------------------- bad input
def test_missing_dir_other_model_and_bad_image_sizes(tiny, tmp_path):
    with pytest.raises(BackendError, match="does not exist"):
        HarmonBackend.load(tmp_path / "nope")
    other = tmp_path / "llama"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(BackendError, match="model_type 'llama': not a seer Harmon directory"):
        HarmonBackend.load(other)
    with pytest.raises(BackendError, match=r"image_size=18: not a multiple of the VAE patch \(4 pixels"):
        HarmonBackend.load(tiny, image_size=18)
    with pytest.raises(BackendError, match="understanding_image_size=14: not a multiple"):
        HarmonBackend.load(tiny, understanding_image_size=14)
    with pytest.raises(BackendError, match="unknown harmon option"):
        HarmonBackend.load(tiny, colour="red")
    with pytest.raises(BackendError, match="guidance_scale=0.5"):
        HarmonBackend.load(tiny, guidance_scale=0.5)


def test_checkpoint_with_missing_or_misshaped_weights(tiny, tmp_path):
    d = tmp_path / "no_head"
    shutil.copytree(tiny, d)
    weights = load_file(d / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("diffusion_head.final_layer")},
              d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(BackendError, match=r"model.safetensors: missing parameter 'diffusion_head.final_layer"):
        HarmonBackend.load(d)
    weights["proj_out.2.bias"] = torch.zeros(5)
    save_file(weights, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(BackendError, match=r"'proj_out.2.bias' has shape \(5,\), the config expects \(32,\)"):
        HarmonBackend.load(d)
    cfg = json.loads((d / "harmon.json").read_text())
    del cfg["vae_scale"]
    (d / "harmon.json").write_text(json.dumps(cfg))
    with pytest.raises(BackendError, match="harmon.json: field 'vae_scale' missing"):
        HarmonBackend.load(d)


def test_too_many_images_and_long_prompts(backend, tiny):
    three = Context("<image> <image> <image> which ?", pics(0, 3))
    with pytest.raises(BackendError, match="at most max_images=2"):
        backend.generate_text([three], 1, SamplingParams(max_new_tokens=2))
    with pytest.raises(BackendError, match="at most max_images=2"):
        backend.check_request(3)
    with pytest.raises(BackendError, match="exceeds max_position_embeddings"):
        HarmonBackend.load(tiny, max_images=40).check_request(40)
    with pytest.raises(BackendError, match="image prompt 1 needs"):
        backend.generate_images(["a cat", " ".join(["cat"] * 600)], [0, 1])
    with pytest.raises(BackendError, match="2 prompts but 1 seeds"):
        backend.generate_images(["a cat", "a dog"], [0])


# ---------------------------------------------------------------- command line
def test_cli_tiny_init_describe(tmp_path, capsys):
    assert harmon_mod.main(["tiny", str(tmp_path / "t")]) == 0
    assert harmon_mod.main(["init", str(tmp_path / "t"), str(tmp_path / "init"), "--check"]) == 0
    assert '"kind": "harmon"' in capsys.readouterr().out
    assert load_backend(tmp_path / "init").kind == "harmon"
    init = write_init_checkpoint(tmp_path / "t", tmp_path / "lora", lora={"r": 2})
    assert load_backend(init).peft_model is not None
    assert harmon_mod.main(["describe", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().out


def test_gradient_checkpointing_gives_the_same_gradients(tiny):
    ctx, ids = evaluator_context(), [[20, 21, 22], [23, 24]]
    grads, calls = [], []
    for ckpt in (False, True):
        b = HarmonBackend.load(tiny, gradient_checkpointing=ckpt)
        layer, seen = b.model.language_model.model.layers[0], []
        if ckpt:
            inner = layer._gradient_checkpointing_func
            layer._gradient_checkpointing_func = lambda *a, inner=inner, seen=seen, **k: (
                seen.append(1) or inner(*a, **k))
        logp, mask = b.token_logprobs([ctx] * 2, ids)
        (logp * mask).sum().backward()
        grads.append([p.grad.clone() for p in b.trainable_parameters() if p.grad is not None])
        calls.append(len(seen))
        assert not b.model.language_model.training
    assert calls == [0, 1] and len(grads[0]) == len(grads[1]) > 0
    for a, c in zip(*grads, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-6)
