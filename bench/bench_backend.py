"""Time the token-UMM backend's three hot paths (text rollout, policy scoring with backward, image generation) in
float32 and with bfloat16 autocast, on the tiny test model and a world-sized one. Prints one JSON object.

    python bench/bench_backend.py [--sizes tiny,world] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from seer.backends.base import Context, SamplingParams
from seer.backends.image_tokenizer import PatchCodebook
from seer.backends.token_umm import TokenUMMBackend, tiny_random_backend, tiny_words
from seer.prompts import DEFAULT_TEMPLATES


def _build(size: str, dtype: str) -> TokenUMMBackend:
    if size == "tiny":
        return tiny_random_backend(seed=0, dtype=dtype)
    if size == "world":  # roughly what the world testbed pretrains: hidden 256, 4 layers, 32x32 images, 64 tokens
        codebook = PatchCodebook.random(256, (32, 32), 4, seed=0)
        return TokenUMMBackend.create(tiny_words(), codebook, hidden=256, layers=4, heads=4, seed=0, dtype=dtype)
    raise SystemExit(f"unknown size {size!r}; expected tiny or world")


def _best(fn, repeats: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds of this process): on a shared machine the CPU time is the steadier one."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def bench(size: str, dtype: str, repeats: int, queries: int, group: int, max_new: int) -> dict:
    be = _build(size, dtype)
    h, w = be.image_tokenizer.image_size
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2)]
    evaluator = [Context(DEFAULT_TEMPLATES.evaluator_text("make it ice", "a cat"), tuple(images))] * (queries // 2)
    reprompt = [Context(DEFAULT_TEMPLATES.reprompt_text("make it ice", "a cat"))] * (queries - queries // 2)
    contexts = evaluator + reprompt
    sp = SamplingParams(max_new_tokens=max_new)
    # the same seed each repeat, so every timed run samples the same tokens
    out = be.generate_text(contexts, group, sp, seed=0)
    tokens = sum(len(c.token_ids) for r in out for c in r)
    t_gen = _best(lambda: be.generate_text(contexts, group, sp, seed=0), repeats)

    flat_ctx = [c for c in contexts for _ in range(group)]
    flat = [c.token_ids for r in out for c in r]

    def score_backward():
        lp, mask = be.token_logprobs(flat_ctx, flat)
        (-(lp * mask).sum() / mask.sum()).backward()
        be.model.zero_grad(set_to_none=True)

    t_score = _best(score_backward, repeats)
    t_ref = _best(lambda: be.token_logprobs(flat_ctx, flat, reference=True), repeats)
    n_img = queries * 2
    t_img = _best(lambda: be.generate_images(["a big red cat"] * n_img, list(range(n_img))), repeats)
    t_gen, c_gen = t_gen
    (t_score, c_score), (t_ref, c_ref), (t_img, c_img) = t_score, t_ref, t_img
    return {
        "size": size,
        "dtype": dtype,
        "params": be.model_summary()["total_model_params"],
        "rollout": {"rows": len(flat), "tokens": tokens, "seconds": round(t_gen, 4),
                    "cpu_seconds": round(c_gen, 4), "tokens_per_s": round(tokens / t_gen, 1)},
        "policy_logprobs_fwd_bwd": {"rows": len(flat), "seconds": round(t_score, 4), "cpu_seconds": round(c_score, 4)},
        "reference_logprobs": {"rows": len(flat), "seconds": round(t_ref, 4), "cpu_seconds": round(c_ref, 4)},
        "images": {"n": n_img, "tokens_per_image": be.image_tokenizer.tokens_per_image, "seconds": round(t_img, 4),
                   "cpu_seconds": round(c_img, 4), "images_per_s": round(n_img / t_img, 2)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny,world", help="comma-separated: tiny, world")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated: float32, bfloat16")
    ap.add_argument("--repeats", type=int, default=3, help="timings are the best of this many runs")
    ap.add_argument("--queries", type=int, default=4, help="contexts per rollout (half evaluator, half reprompt)")
    ap.add_argument("--group", type=int, default=8, help="completions per context (GRPO group size G)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = [bench(s, d, args.repeats, args.queries, args.group, args.max_new_tokens)
               for s in args.sizes.split(",") for d in args.dtypes.split(",")]
    print(json.dumps({"torch_threads": torch.get_num_threads(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
