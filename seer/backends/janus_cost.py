"""Back-of-envelope memory and time per optimizer step for SEER on Janus-Pro 1B / 7B (the recipes' README tables).

How the numbers are made (nothing here was measured on a GPU):

* **Parameters** are counted exactly by instantiating ``JanusForConditionalGeneration`` on the ``meta`` device from
  the Janus-Pro configs below (the transformers conversions' sizes), split into θ and ϕ as the backend does.
* **Memory** per GPU = weights (2 bytes/param in bf16) + the reference policy (full fine-tuning re-reads the whole
  model, LoRA keeps an adapter copy) + the RLMT judge (the stages load it as a second model) + θ's gradient and the
  two AdamW
  moments (in θ's dtype, as ``torch.optim.AdamW`` keeps them) + the stages' flat gradient all-reduce buffer (two
  copies of θ's gradient, multi-GPU only) + activations of one group's scoring pass with gradient checkpointing
  (every layer's input, one layer's working set of ~34·s·h bytes per sequence [Korthikanti et al. 2022, without the
  attention-score term since SDPA/flash attention never materialise it], and the float32 logits of the completion
  positions) or the KV cache of a rollout, whichever is larger.
* **Time** = compute-bound parts (prefill, scoring forward/backward: 2·N FLOPs per token forward, ×3 with backward,
  +1 forward for checkpointing) at ``mfu`` of the GPU's bf16 peak, plus memory-bound decoding (text and the 576 image
  tokens per image) at one weight read (+ KV cache) per step at ``bw_eff`` of the HBM bandwidth.

Run ``python -m seer.backends.janus_cost`` for the tables; every assumption is an argument.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

JANUS_PRO_TEXT = {
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=24, num_attention_heads=16,
               num_key_value_heads=16, vocab_size=102400, max_position_embeddings=16384),
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=30, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=102400, max_position_embeddings=16384),
}
GPUS = {"a100-40gb": (312e12, 1.555e12, 40), "a100-80gb": (312e12, 2.0e12, 80), "h100-80gb": (989e12, 3.35e12, 80)}


def janus_pro_config(size: str):
    """A JanusConfig with Janus-Pro-1B or -7B sizes (SigLIP-L/16 at 384 px, 576 image tokens, 16384-entry VQ)."""
    from transformers import JanusConfig

    text = {"model_type": "llama", **JANUS_PRO_TEXT[size]}
    proj = text["hidden_size"]
    return JanusConfig(text_config=text, vision_config={"projection_dim": proj},
                       vq_config={"projection_dim": proj, "image_token_embed_dim": proj}, tie_word_embeddings=False)


def count_parameters(size: str) -> dict[str, int]:
    """Exact parameter counts per top-level module, from a meta-device instantiation (no memory is allocated)."""
    import torch
    from transformers import JanusForConditionalGeneration

    with torch.device("meta"):
        model = JanusForConditionalGeneration(janus_pro_config(size))
    counts = {name: sum(p.numel() for p in mod.parameters()) for name, mod in model.model.named_children()}
    counts["lm_head"] = model.lm_head.weight.numel()
    return counts


@dataclass
class Setting:
    size: str = "1b"
    stage: str = "rlvr"  # rlvr | rlmt
    lora_rank: int = 0  # 0 = full fine-tuning of θ
    group_size: int = 8  # G
    queries_per_step: int = 4  # global
    gpus: int = 1
    max_new_tokens: int = 256
    text_prompt_tokens: int = 120  # evaluator / reprompt template + instruction + prompt, without image tokens
    image_batch_size: int = 8
    gpu: str = "a100-40gb"
    judge_shares_base: bool = False  # True once the RLMT stage loads a LoRA judge with share_base_with
    mfu: float = 0.35
    bw_eff: float = 0.6


def estimate(s: Setting) -> dict[str, float]:
    c = count_parameters(s.size)
    t = JANUS_PRO_TEXT[s.size]
    h, layers, vocab = t["hidden_size"], t["num_hidden_layers"], t["vocab_size"]
    n_total = sum(c.values())
    n_llm = c["language_model"] + c["lm_head"]
    n_vis = c["vision_model"] + c["aligner"]
    n_phi = c["vqmodel"] + c["generation_embeddings"] + c["generation_aligner"] + c["generation_head"]
    if s.lora_rank:  # q,k,v,o,gate,up,down of every layer: r·(in+out) each
        inter = t["intermediate_size"]
        n_theta = layers * s.lora_rank * (4 * 2 * h + 3 * (h + inter))
        theta_bytes = 4  # peft keeps adapters in float32
    else:
        n_theta = n_llm + n_vis  # the RLMT policy starts from the RLVR checkpoint, whose θ includes the encoder
        theta_bytes = 2
    peak, bw, gpu_gb = GPUS[s.gpu]
    gb = 1e9

    img_tokens = 578  # BOI + 576 + EOI
    n_img = 2 if s.stage == "rlvr" else 0
    prompt = s.text_prompt_tokens + n_img * img_tokens
    seq = prompt + s.max_new_tokens
    g = s.group_size
    q_local = math.ceil(s.queries_per_step / s.gpus)

    weights = n_total * 2
    reference = n_theta * theta_bytes if s.lora_rank else n_total * 2
    # the stages load the RLMT judge as its own model; a LoRA judge can share the policy's base (share_base_with)
    judge = 0 if s.stage == "rlvr" or (s.lora_rank and s.judge_shares_base) else n_total * 2
    optim = n_theta * theta_bytes * 3  # gradient + AdamW exp_avg + exp_avg_sq
    allreduce = 2 * n_theta * theta_bytes if s.gpus > 1 else 0
    act_llm = layers * g * seq * h * 2 + 34 * g * seq * h + 3 * g * (s.max_new_tokens + 1) * vocab * 4
    act_vis = (24 * g * n_img * 576 * 1024 * 2 + 34 * g * n_img * 576 * 1024) if s.stage == "rlvr" else 0
    kv_per_token = 2 * layers * h * 2
    kv_text = g * seq * kv_per_token
    kv_image = 2 * s.image_batch_size * (s.text_prompt_tokens + img_tokens) * kv_per_token if s.stage == "rlmt" else 0
    transient = max(act_llm + act_vis, kv_text, kv_image)
    memory = weights + reference + judge + optim + allreduce + transient

    # time per optimizer step on one GPU's share of the queries
    flops_fwd_tok = 2 * n_llm
    vis_fwd = 2 * n_vis * 576 * n_img  # per sequence (the sampler encodes each copy's images)
    prefill = q_local * g * (prompt * flops_fwd_tok + vis_fwd)
    scoring = q_local * g * (seq * flops_fwd_tok + vis_fwd) * (3 + 1 + 1)  # fwd+bwd, recompute, reference fwd
    compute_s = (prefill + scoring) / (peak * s.mfu)
    step_read = n_llm * 2 / (bw * s.bw_eff)  # one weight read per decode step
    decode_s = q_local * s.max_new_tokens * (step_read + g * seq * kv_per_token / (bw * s.bw_eff))
    image_s = judge_s = 0.0
    if s.stage == "rlmt":  # G reprompt images + the baseline, 576 guided steps each batch; the judge reads 2 images
        batches = math.ceil((g + 1) / s.image_batch_size)
        image_s = q_local * batches * 576 * step_read
        judge_prefill = q_local * g * ((s.text_prompt_tokens + 2 * img_tokens) * flops_fwd_tok + 2 * n_vis * 1152)
        judge_s = judge_prefill / (peak * s.mfu) + q_local * s.max_new_tokens * step_read
    step_s = compute_s + decode_s + image_s + judge_s
    return {
        "params_total_B": n_total / gb, "theta_trainable_M": n_theta / 1e6, "phi_frozen_M": n_phi / 1e6,
        "seq_tokens": seq, "mem_weights_GB": weights / gb, "mem_reference_GB": reference / gb,
        "mem_judge_GB": judge / gb, "mem_grad_adam_GB": optim / gb, "mem_allreduce_GB": allreduce / gb,
        "mem_activations_or_kv_GB": transient / gb, "mem_total_GB": memory / gb, "gpu_GB": gpu_gb,
        "time_compute_s": compute_s, "time_text_decode_s": decode_s, "time_images_s": image_s,
        "time_judge_s": judge_s, "time_step_s": step_s,
    }


def table(settings: list[tuple[str, Setting]]) -> str:
    rows = [(name, estimate(s)) for name, s in settings]
    keys = list(rows[0][1])
    out = ["| setting | " + " | ".join(k for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in rows:
        out.append(f"| {name} | " + " | ".join(f"{r[k]:.1f}" if isinstance(r[k], float) else str(r[k])
                                             for k in keys) + " |")
    return "\n".join(out)


def recipe_settings() -> list[tuple[str, Setting]]:
    """The settings of the shipped recipes (recipes/janus_pro_1b, recipes/janus_pro_7b)."""
    return [
        ("1B full, RLVR, 1xA100-40GB", Setting("1b", "rlvr")),
        ("1B full, RLMT, 1xA100-40GB", Setting("1b", "rlmt")),
        ("1B full, RLVR, 2xA100-40GB", Setting("1b", "rlvr", gpus=2)),
        ("1B full, RLMT, 2xA100-40GB", Setting("1b", "rlmt", gpus=2)),
        ("7B LoRA r64, RLVR, 1xA100-80GB", Setting("7b", "rlvr", lora_rank=64, gpu="a100-80gb")),
        ("7B LoRA r64, RLMT, 1xA100-80GB", Setting("7b", "rlmt", lora_rank=64, gpu="a100-80gb")),
        ("7B LoRA r64, RLVR, 2xA100-40GB", Setting("7b", "rlvr", lora_rank=64, gpus=2)),
        ("7B LoRA r64, RLMT, 2xA100-40GB", Setting("7b", "rlmt", lora_rank=64, gpus=2)),
        ("7B full, RLVR, 8xA100-80GB (replicated)", Setting("7b", "rlvr", gpus=8, gpu="a100-80gb")),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seer.backends.janus_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(JANUS_PRO_TEXT))
    p.add_argument("--stage", choices=("rlvr", "rlmt"), default="rlvr")
    p.add_argument("--lora-rank", type=int, default=0)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--queries-per-step", type=int, default=4)
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--gpu", choices=sorted(GPUS), default="a100-40gb")
    args = p.parse_args(argv)
    if args.size is None:
        print(table(recipe_settings()))
        return 0
    s = Setting(args.size, args.stage, args.lora_rank, args.group_size, args.queries_per_step, args.gpus,
                args.max_new_tokens, gpu=args.gpu)
    print(table([(f"{args.size} {args.stage}", s)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
