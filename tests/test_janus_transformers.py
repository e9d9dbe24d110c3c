"""Regression guard for transformers' Janus image generation (the reason for the pin in pyproject.toml).

``JanusForConditionalGeneration.generate(generation_mode="image")`` runs its own classifier-free-guidance loop
over the language model. These tests compare it with a loop written here from the Janus paper's recipe
(conditional + unconditional rows, ``uncond + s * (cond - uncond)`` on the generation head, next input from the
generation embeddings + aligner) on a tiny random model, so a transformers release that changes what the loop feeds
the model fails here before it silently degrades real images.

The file uses transformers and torch only (no seer import), so it also runs as a probe under other transformers
versions: ``PYTHONPATH=/path/to/other/transformers python tests/test_janus_transformers.py``.
"""

from __future__ import annotations

import sys

import torch

GUIDANCE = 3.0
PAD, BOS, BOI, IMAGE = 0, 1, 6, 5


def tiny_janus(seed: int = 0):
    from transformers import JanusConfig, JanusForConditionalGeneration

    config = JanusConfig(
        text_config=dict(model_type="llama", vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=PAD,
                         bos_token_id=BOS, eos_token_id=2),
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, image_size=32, patch_size=8,
                           projection_dim=32, num_image_tokens=16, mlp_ratio=2.0),
        vq_config=dict(embed_dim=8, num_embeddings=32, latent_channels=32, base_channels=32, channel_multiplier=[1, 2],
                       num_res_blocks=1, projection_dim=32, image_token_embed_dim=32),
        image_token_id=IMAGE,
    )
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(config).eval()
    # a random init gives near-uniform image logits; sharpen the generation head so argmax decisions are robust to
    # float noise and a wrong input to the loop changes the tokens
    with torch.no_grad():
        model.model.generation_head.vision_head.weight.mul_(20.0)
    gc = model.generation_config  # what a converted Janus checkpoint ships in generation_config.json
    gc.bos_token_id, gc.pad_token_id, gc.eos_token_id = BOS, PAD, 2
    gc.generation_kwargs = {"boi_token_id": BOI}
    return model


def hf_image_tokens(model, ids: torch.Tensor, mask: torch.Tensor, do_sample: bool = False) -> torch.Tensor:
    return model.generate(
        input_ids=ids, attention_mask=mask, generation_mode="image", do_sample=do_sample, guidance_scale=GUIDANCE,
        max_length=ids.shape[1] + 16, num_return_sequences=1,  # 5.0-5.4 crash when these are left unset (None)
    )


@torch.no_grad()
def reference_image_tokens(model, ids: torch.Tensor) -> torch.Tensor:
    """Greedy CFG image tokens for unpadded prompts, written from the Janus recipe (KV cache, rows [cond; uncond])."""
    from seer.backends.base import cache_keyword

    b, n = ids.shape[0], model.config.vision_config.num_image_tokens
    uncond = ids.clone()
    uncond[(uncond != BOS) & (uncond != BOI)] = PAD  # the unconditional prompt keeps only BOS and BOI
    tokens = torch.cat([ids, uncond])
    embeds = model.get_input_embeddings()(tokens)
    past, out_tokens = None, []
    for _ in range(n):
        kw = cache_keyword(type(model.model.language_model))  # cache= where past_key_values= is deprecated
        out = model.model.language_model(inputs_embeds=embeds, use_cache=True, **({kw: past} if past else {}))
        past = getattr(out, kw)
        scores = model.model.generation_head(out.last_hidden_state[:, -1])  # (2B, codebook)
        guided = scores[b:] + GUIDANCE * (scores[:b] - scores[b:])
        nxt = guided.argmax(-1)
        out_tokens.append(nxt)
        embeds = model.prepare_embeddings_for_image_generation(torch.cat([nxt, nxt])[:, None])
    return torch.stack(out_tokens, 1)


def prompts() -> torch.Tensor:
    return torch.tensor([[BOS, 10, 11, 12, 13, BOI], [BOS, 20, 21, 22, 23, BOI]])


def test_image_generation_matches_reference_loop():
    model = tiny_janus()
    ids = prompts()
    got = hf_image_tokens(model, ids, torch.ones_like(ids))
    want = reference_image_tokens(model, ids)
    assert got.shape == (2, 16)
    assert torch.equal(got.cpu(), want.cpu()), f"transformers image loop diverged:\n{got}\nvs reference\n{want}"


def test_image_sampling_is_deterministic_for_a_seed_and_decodes_to_image_shape():
    model = tiny_janus()
    ids = prompts()
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        runs.append(hf_image_tokens(model, ids, torch.ones_like(ids), do_sample=True))
    assert torch.equal(runs[0], runs[1])
    pixels = model.decode_image_tokens(runs[0])
    grid = model.config.vq_config.num_patches
    side = grid * 2 ** (len(model.config.vq_config.channel_multiplier) - 1)
    assert pixels.shape == (2, side, side, 3)
    assert torch.isfinite(pixels).all()


@torch.no_grad()
def test_text_logits_match_between_forward_and_text_generation():
    """The text-mode logits path: scores returned by generate() equal a plain forward's last-position logits."""
    model = tiny_janus()
    ids = torch.tensor([[BOS, 10, 11, 12, 13]])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False,
                         output_logits=True, return_dict_in_generate=True)
    seq = out.sequences
    for step, logits in enumerate(out.logits):
        prefix = seq[:, : ids.shape[1] + step]
        want = model(input_ids=prefix).logits[:, -1]
        torch.testing.assert_close(logits, want, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_first_image_step_scores_match_plain_forward():
    """Where the two modes must agree: the first image-token scores come from the same backbone as a plain forward."""
    model = tiny_janus()
    ids = prompts()[:1]
    hidden = model.model(input_ids=ids).last_hidden_state[:, -1]
    want = model.model.generation_head(hidden).argmax(-1)  # guidance 1 would give exactly this token
    got = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_mode="image",
                         do_sample=False, guidance_scale=1.0 + 1e-6, max_length=ids.shape[1] + 16,
                         num_return_sequences=1)
    uncond = ids.clone()
    uncond[(uncond != BOS) & (uncond != BOI)] = PAD
    h_u = model.model(input_ids=uncond).last_hidden_state[:, -1]
    s_c, s_u = model.model.generation_head(hidden), model.model.generation_head(h_u)
    guided = s_u + (1.0 + 1e-6) * (s_c - s_u)
    assert int(got[0, 0]) == int(guided.argmax(-1)[0]) == int(want[0])


if __name__ == "__main__":  # the version probe: exit 0 when this transformers generates Janus images correctly
    import transformers

    failures = []
    for name, fn in sorted(globals().items()):
        if name.startswith("test_") and callable(fn):
            try:
                fn()
                print(f"PASS {name}")
            except Exception as e:  # noqa: BLE001 - a probe reports every failure kind
                failures.append(name)
                print(f"FAIL {name}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
    print(f"transformers {transformers.__version__}: {'OK' if not failures else 'BROKEN ' + ','.join(failures)}")
    sys.exit(1 if failures else 0)
