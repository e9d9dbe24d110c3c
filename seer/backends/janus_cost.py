"""Back-of-envelope memory and time per optimizer step for SEER on Janus-Pro 1B / 7B (the recipes' README tables).

How the numbers are made (nothing here was measured on a GPU):

* **Parameters** are counted exactly by instantiating ``JanusForConditionalGeneration`` on the ``meta`` device from
  the Janus-Pro configs below (the transformers conversions' sizes), split into θ and ϕ as the backend does.
* **Memory** per GPU = weights (2 bytes/param in bf16; θ at 4 bytes with ``master_weights: float32``) + the
  reference policy (full fine-tuning re-reads the whole model in bf16, LoRA keeps an adapter copy) + the RLMT judge
  (a second model, unless a LoRA judge shares the policy's base: ``share_evaluator_base``) + θ's gradient and the
  two AdamW moments (in θ's dtype, as ``torch.optim.AdamW`` keeps them) + the stages' flat gradient all-reduce
  buffer (two copies of θ's gradient, multi-GPU only) + activations of one group's scoring pass with gradient
  checkpointing (every layer's input, one layer's working set of ~34·s·h bytes per sequence [Korthikanti et al.
  2022, without the attention-score term since SDPA/flash attention never materialise it], and the float32 logits of
  the completion positions) or the largest KV cache (rollout, judge or image batch), whichever is larger.
* **Sequential model calls** (:func:`sequential_calls`) follow the backend's loops: ``generate_text`` prefills each
  distinct context once and decodes all of a step's rows in one loop (≤ max_new_tokens calls); the judge is one such
  loop over all G × queries evaluator contexts; images take ``num_image_tokens`` calls per batch of
  ``image_batch_size`` prompts. ``bench/bench_janus_step.py`` measures the same counts on a tiny Janus.
* **Time** = compute-bound parts (prefill once per context, scoring forward/backward: 2·N FLOPs per token forward,
  ×3 with backward, +1 forward for checkpointing) at ``mfu`` of the GPU's bf16 peak, plus memory-bound decoding: each
  sequential decode call reads the weights once plus its rows' KV cache, at ``bw_eff`` of the HBM bandwidth.

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
    groups_per_forward: int = 1  # query groups scored per token_logprobs call in the update (0 = all)
    gpu: str = "a100-40gb"
    judge_shares_base: bool = False  # a LoRA judge loaded on the policy's base (share_evaluator_base: true)
    master_weights: bool = False  # full fine-tuning with θ in float32 (master_weights: float32)
    judge_max_new_tokens: int = 256
    image_tokens: int = 576  # per image (Janus-Pro: 384 px / 16)
    mfu: float = 0.35
    bw_eff: float = 0.6


def sequential_calls(s: Setting) -> dict[str, dict[str, object]]:
    """Language-model calls one process makes per optimizer step, per phase, in the worst case (no row stops
    early): ``{"sequential_calls": N, "batch_sizes": [...]}``. The update counts forwards (policy + reference per
    chunk of ``groups_per_forward`` groups; the backward and checkpoint recomputation are inside those calls)."""
    q, g = math.ceil(s.queries_per_step / s.gpus), s.group_size
    out: dict[str, dict[str, object]] = {
        "rollout": {"sequential_calls": s.max_new_tokens, "batch_sizes": sorted({q, q * g})},
    }
    if s.stage == "rlmt":
        prompts = q * (g + 1)  # G reprompt images + the baseline per query
        full, rest = divmod(prompts, s.image_batch_size)
        sizes = ({2 * s.image_batch_size} if full else set()) | ({2 * rest} if rest else set())
        out["images"] = {"sequential_calls": (full + (1 if rest else 0)) * s.image_tokens,
                         "batch_sizes": sorted(sizes)}
        out["judge"] = {"sequential_calls": s.judge_max_new_tokens, "batch_sizes": [q * g]}
    chunks = math.ceil(q / s.groups_per_forward) if s.groups_per_forward else 1
    rows = g * (s.groups_per_forward or q)
    out["update"] = {"sequential_calls": 2 * chunks, "batch_sizes": sorted({min(rows, q * g)})}
    return out


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
        theta_bytes = 4 if s.master_weights else 2
    peak, bw, gpu_gb = GPUS[s.gpu]
    gb = 1e9

    img_tokens = s.image_tokens + 2  # BOI + 576 + EOI
    n_img = 2 if s.stage == "rlvr" else 0
    prompt = s.text_prompt_tokens + n_img * img_tokens
    seq = prompt + s.max_new_tokens
    g = s.group_size
    q_local = math.ceil(s.queries_per_step / s.gpus)

    weights = n_total * 2 + (0 if s.lora_rank else n_theta * (theta_bytes - 2))  # float32 master θ: +2 B/param
    reference = n_theta * theta_bytes if s.lora_rank else n_total * 2
    # the stages load the RLMT judge as its own model; a LoRA judge can share the policy's base (share_base_with)
    judge = 0 if s.stage == "rlvr" or (s.lora_rank and s.judge_shares_base) else n_total * 2
    optim = n_theta * theta_bytes * 3  # gradient + AdamW exp_avg + exp_avg_sq
    allreduce = 2 * n_theta * theta_bytes if s.gpus > 1 else 0
    act_llm = layers * g * seq * h * 2 + 34 * g * seq * h + 3 * g * (s.max_new_tokens + 1) * vocab * 4
    act_vis = (24 * g * n_img * 576 * 1024 * 2 + 34 * g * n_img * 576 * 1024) if s.stage == "rlvr" else 0
    kv_per_token = 2 * layers * h * 2
    kv_text = q_local * g * seq * kv_per_token  # one decode loop holds every row of the step
    judge_seq = s.text_prompt_tokens + 2 * img_tokens + s.judge_max_new_tokens
    kv_judge = q_local * g * judge_seq * kv_per_token if s.stage == "rlmt" else 0
    kv_image = (2 * s.image_batch_size * (s.text_prompt_tokens + img_tokens) * kv_per_token
                if s.stage == "rlmt" else 0)
    transient = max(act_llm + act_vis, kv_text, kv_judge, kv_image)
    memory = weights + reference + judge + optim + allreduce + transient

    # time per optimizer step on one GPU's share of the queries
    calls = sequential_calls(s)
    flops_fwd_tok = 2 * n_llm
    vis_fwd = 2 * n_vis * s.image_tokens * n_img  # per context: its images are encoded once
    prefill = q_local * (prompt * flops_fwd_tok + vis_fwd)  # one prefill per context, shared by its G rows
    # fwd+bwd, recompute, reference fwd; a group's images are encoded once for its G rows
    scoring = q_local * (g * seq * flops_fwd_tok + vis_fwd) * (3 + 1 + 1)
    compute_s = (prefill + scoring) / (peak * s.mfu)
    step_read = n_llm * 2 / (bw * s.bw_eff)  # one weight read per sequential decode call
    rows = q_local * g
    decode_s = calls["rollout"]["sequential_calls"] * (step_read + rows * seq * kv_per_token / (bw * s.bw_eff))
    image_s = judge_s = 0.0
    if s.stage == "rlmt":  # 576 guided steps per image batch; the judge reads 2 images per context, once
        image_kv = 2 * s.image_batch_size * (s.text_prompt_tokens + img_tokens) * kv_per_token / (bw * s.bw_eff)
        image_s = calls["images"]["sequential_calls"] * (step_read + image_kv)
        judge_prefill = rows * ((s.text_prompt_tokens + 2 * img_tokens) * flops_fwd_tok + 2 * n_vis * 2 * 576)
        judge_s = judge_prefill / (peak * s.mfu) + calls["judge"]["sequential_calls"] * (
            step_read + rows * judge_seq * kv_per_token / (bw * s.bw_eff))
    step_s = compute_s + decode_s + image_s + judge_s
    return {
        "params_total_B": n_total / gb, "theta_trainable_M": n_theta / 1e6, "phi_frozen_M": n_phi / 1e6,
        "seq_tokens": seq, "mem_weights_GB": weights / gb, "mem_reference_GB": reference / gb,
        "mem_judge_GB": judge / gb, "mem_grad_adam_GB": optim / gb, "mem_allreduce_GB": allreduce / gb,
        "mem_activations_or_kv_GB": transient / gb, "mem_total_GB": memory / gb, "gpu_GB": gpu_gb,
        "time_compute_s": compute_s, "time_text_decode_s": decode_s, "time_images_s": image_s,
        "time_judge_s": judge_s, "time_step_s": step_s,
        "sequential_calls": sum(int(c["sequential_calls"]) for c in calls.values()),
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
    one_b = {"master_weights": True, "image_batch_size": 9, "groups_per_forward": 1}
    seven_b = {"image_batch_size": 9, "groups_per_forward": 1}
    return [
        ("1B full fp32-master, RLVR, 1xA100-40GB", Setting("1b", "rlvr", **one_b)),
        ("1B full fp32-master, RLMT, 1xA100-40GB", Setting("1b", "rlmt", **one_b)),
        ("1B full fp32-master, RLVR, 1xA100-80GB", Setting("1b", "rlvr", gpu="a100-80gb", **one_b)),
        ("1B full fp32-master, RLMT, 1xA100-80GB", Setting("1b", "rlmt", gpu="a100-80gb", **one_b)),
        ("1B full fp32-master, RLVR, 2xA100-80GB", Setting("1b", "rlvr", gpus=2, gpu="a100-80gb", **one_b)),
        ("1B full fp32-master, RLMT, 2xA100-80GB", Setting("1b", "rlmt", gpus=2, gpu="a100-80gb", **one_b)),
        ("7B LoRA r64, RLVR, 1xA100-80GB", Setting("7b", "rlvr", lora_rank=64, gpu="a100-80gb", **seven_b)),
        ("7B LoRA r64 shared judge, RLMT, 1xA100-80GB", Setting("7b", "rlmt", lora_rank=64, gpu="a100-80gb",
                                                                judge_shares_base=True, **seven_b)),
        ("7B LoRA r64, RLVR, 2xA100-40GB", Setting("7b", "rlvr", lora_rank=64, gpus=2, **seven_b)),
        ("7B LoRA r64 shared judge, RLMT, 2xA100-40GB", Setting("7b", "rlmt", lora_rank=64, gpus=2,
                                                                judge_shares_base=True, **seven_b)),
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
    p.add_argument("--master-weights", action="store_true", help="full fine-tuning with θ in float32")
    p.add_argument("--judge-shares-base", action="store_true", help="LoRA judge on the policy's base (RLMT)")
    p.add_argument("--judge-max-new-tokens", type=int, default=256)
    p.add_argument("--image-batch-size", type=int, default=9)
    p.add_argument("--groups-per-forward", type=int, default=1)
    args = p.parse_args(argv)
    if args.size is None:
        print(table(recipe_settings()))
        return 0
    s = Setting(args.size, args.stage, lora_rank=args.lora_rank, group_size=args.group_size,
                queries_per_step=args.queries_per_step, gpus=args.gpus, max_new_tokens=args.max_new_tokens,
                gpu=args.gpu, master_weights=args.master_weights, judge_shares_base=args.judge_shares_base,
                judge_max_new_tokens=args.judge_max_new_tokens, image_batch_size=args.image_batch_size,
                groups_per_forward=args.groups_per_forward)
    print(table([(f"{args.size} {args.stage}", s)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
