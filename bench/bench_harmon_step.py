"""Count the model calls of one RLMT and one RLVR step of the Harmon backend, on a tiny random Harmon with
Harmon-1.5B's *token counts* at the recipe's settings (512 px: 32x32 latent tokens + 64 buffer slots per image,
64 MAR steps, 100 diffusion steps, guidance on) and tiny widths. Prints one JSON object:

    {"setting": {...}, "rlmt": {PHASE: {"lm_calls": N, "lm_batch_sizes": [...], "lm_max_tokens": T,
                                         "mar_encoder_calls": .., "mar_decoder_calls": .., "diffusion_head_calls": ..,
                                         "diffusion_head_max_rows": .., "vae_decodes": ..}, ...},
     "rlvr": {...}, "estimate": {...}}

    PYTHONPATH=. python bench/bench_harmon_step.py [--max-new-tokens 8] [--num-iter 64] [--diffusion-steps 100]

PHASE is rollout, images, judge, update. A "call" is one sequential forward of that module (the unit a GPU pays a
weight read and a kernel launch chain for); batch sizes are the rows of each call. The stage code runs unchanged
(``seer.stages.rlmt.rollouts`` / ``rlvr.rollouts`` and ``common.grpo_update``), except that every reprompt counts as
well formed (a random model rarely writes ``<reprompt> … </reprompt>``; without one no image is drawn or judged).
Counts are exact for this code; ``estimate`` turns them into GPU time with *assumed* per-call costs — an estimate,
not a measurement: no GPU ran this.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seer.backends.harmon import HarmonBackend, build_tiny_harmon
from seer.config import RLMTConfig, RLVRConfig
from seer.data import Quadruplet, Sample
from seer.prompts import Parsed
from seer.stages import common, rlmt, rlvr

G, Q, IMAGE_BATCH = 8, 4, 9  # the recipes' group size, queries per step and image batch


class Counter:
    """Forward pre-hooks on the Qwen2 trunk, the diffusion head and the VAE decoder; wrapped MAR encode/decode."""

    def __init__(self, *backends: HarmonBackend) -> None:
        self.phase = "other"
        self.rows: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        self.tokens: dict[str, list[int]] = defaultdict(list)
        seen: set[int] = set()
        for b in backends:
            models = [b.model]
            if b.peft_model is None:  # the full fine-tune's reference is a separate frozen model: count it too
                if b._reference is None:
                    b._reference = b._loaded_model()
                models.append(b._reference)
            for m in models:
                if id(m) in seen:
                    continue
                seen.add(id(m))
                m.language_model.model.register_forward_pre_hook(self._hook("lm"), with_kwargs=True)
                m.diffusion_head.register_forward_pre_hook(self._hook("diffusion_head"), with_kwargs=True)
                m.vae.decoder.register_forward_pre_hook(self._hook("vae_decode"), with_kwargs=True)
                for name in ("encode", "decode"):
                    setattr(m.mar, name, self._wrap(getattr(m.mar, name), f"mar_{name}r"))

    def _hook(self, what: str) -> Any:
        def hook(module: Any, args: tuple, kwargs: dict) -> None:
            x = next((t for t in (kwargs.get("inputs_embeds"), kwargs.get("input_ids"), kwargs.get("x"), *args)
                      if isinstance(t, torch.Tensor)), None)
            self.rows[self.phase][what].append(int(x.shape[0]))
            if what == "lm":
                self.tokens[self.phase].append(int(x.shape[1]))
        return hook

    def _wrap(self, fn: Any, what: str) -> Any:
        def wrapped(x: torch.Tensor, *a: Any, **k: Any) -> Any:
            self.rows[self.phase][what].append(int(x.shape[0]))
            return fn(x, *a, **k)
        return wrapped

    def phase_of(self, fn: Any, phase: str) -> Any:
        def wrapped(*a: Any, **k: Any) -> Any:
            before, self.phase = self.phase, phase
            try:
                return fn(*a, **k)
            finally:
                self.phase = before
        return wrapped

    def summary(self) -> dict[str, Any]:
        out = {}
        for phase, by in self.rows.items():
            out[phase] = {
                "lm_calls": len(by["lm"]), "lm_batch_sizes": sorted(set(by["lm"])),
                "lm_max_tokens": max(self.tokens[phase], default=0),
                "mar_encoder_calls": len(by["mar_encoder"]), "mar_decoder_calls": len(by["mar_decoder"]),
                "diffusion_head_calls": len(by["diffusion_head"]),
                "diffusion_head_max_rows": max(by["diffusion_head"], default=0),
                "vae_decodes": len(by["vae_decode"]),
            }
        return out


def bench_rlmt(model_dir: Path, k: int, opts: dict[str, Any]) -> dict[str, Any]:
    policy = HarmonBackend.load(model_dir, image_batch_size=IMAGE_BATCH, **opts)
    judge = HarmonBackend.load(model_dir, **opts)
    c = Counter(policy, judge)
    policy.generate_text = c.phase_of(policy.generate_text, "rollout")
    policy.generate_images = c.phase_of(policy.generate_images, "images")
    judge.generate_text = c.phase_of(judge.generate_text, "judge")
    cfg = RLMTConfig(evaluator="unused", samples="unused", group_size=G, queries_per_step=Q, max_new_tokens=k,
                     judge_max_new_tokens=k, groups_per_forward=1)
    samples = [Sample(f"s{i}", "make it red", p, "semantic_edit")
               for i, p in enumerate(["a cat", "a dog", "a house", "a tree"])]
    original = rlmt.parse_reprompt
    rlmt.parse_reprompt = lambda text: Parsed(True, "", text.strip() or "a cat")  # see the module docstring
    t0 = time.perf_counter()
    try:
        groups = rlmt.rollouts(policy, judge, cfg, samples, [11, 12, 13, 14], {k_: 0.0 for k_ in common.TIME_KEYS})
    finally:
        rlmt.parse_reprompt = original
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-6)
    c.phase_of(common.grpo_update, "update")(policy, opt, groups, cfg, common.Dist(), len(groups))
    out = c.summary()
    out["cpu_seconds_tiny"] = round(time.perf_counter() - t0, 1)
    return out


def bench_rlvr(model_dir: Path, k: int, opts: dict[str, Any]) -> dict[str, Any]:
    backend = HarmonBackend.load(model_dir, **opts)
    c = Counter(backend)
    backend.generate_text = c.phase_of(backend.generate_text, "rollout")
    cfg = RLVRConfig(model="unused", quadruplets="unused", group_size=G, queries_per_step=Q, max_new_tokens=k,
                     groups_per_forward=1)
    rng = np.random.default_rng(1)
    quads = [Quadruplet(f"q{i}", 2, "make it red", "a cat", "semantic_edit", "a.png", "b.png") for i in range(Q)]
    images = {q.id: tuple(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(2)) for q in quads}
    t0 = time.perf_counter()
    groups = rlvr.rollouts(backend, cfg, images, quads, [21, 22, 23, 24], {k_: 0.0 for k_ in common.TIME_KEYS})
    opt = torch.optim.AdamW(backend.trainable_parameters(), lr=1e-6)
    c.phase_of(common.grpo_update, "update")(backend, opt, groups, cfg, common.Dist(), len(groups))
    out = c.summary()
    out["cpu_seconds_tiny"] = round(time.perf_counter() - t0, 1)
    return out


# Assumed per-call GPU costs for Harmon-1.5B in bf16 on one H100-class GPU — assumptions, not measurements:
# a decode step of the 1.5B LM over a few dozen rows is weight-read bound (~3 GB of weights at ~2 TB/s ≈ 2 ms,
# plus launch overhead); a generation step runs the LM on 18 rows x ~1.1k tokens (~40 TFLOP/s effective: ~15 ms)
# plus the MAR encoder and decoder (~0.4B each at the same token count: ~5 ms each); a diffusion-head call is a
# 12-block MLP over at most a few hundred rows: launch bound, ~0.5 ms.
ASSUMED_MS = {"lm_decode": 3.0, "lm_generation_step": 15.0, "mar_call": 5.0, "diffusion_head_call": 0.5}


def estimate(rlmt_counts: dict[str, Any], rlvr_counts: dict[str, Any], k: int, recipe_k: int = 256
             ) -> dict[str, Any]:
    """Seconds per step phase from the counted calls and ``ASSUMED_MS``. Text phases make one LM call per new
    token (counted at ``k``): scaled to the recipes' ``recipe_k`` new tokens."""
    img = rlmt_counts["images"]
    images_ms = (img["lm_calls"] * ASSUMED_MS["lm_generation_step"]
                 + (img["mar_encoder_calls"] + img["mar_decoder_calls"]) * ASSUMED_MS["mar_call"]
                 + img["diffusion_head_calls"] * ASSUMED_MS["diffusion_head_call"])
    scale = recipe_k / k
    text_ms = sum(rlmt_counts[p]["lm_calls"] for p in ("rollout", "judge")) * scale * ASSUMED_MS["lm_decode"]
    return {"assumed_ms_per_call": ASSUMED_MS, "text_calls_scaled_to_max_new_tokens": recipe_k,
            "rlmt_images_seconds": round(images_ms / 1000, 2),
            "rlmt_images_share_diffusion_head": round(
                img["diffusion_head_calls"] * ASSUMED_MS["diffusion_head_call"] / images_ms, 2),
            "rlmt_rollout_plus_judge_seconds": round(text_ms / 1000, 2),
            "rlvr_rollout_seconds": round(rlvr_counts["rollout"]["lm_calls"] * scale * ASSUMED_MS["lm_decode"]
                                          / 1000, 2),
            "note": "an estimate from counted calls and assumed per-call costs (update passes not included); "
                    "no GPU ran this"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-new-tokens", type=int, default=8, help="rollout and judge completion cap (K)")
    p.add_argument("--num-iter", type=int, default=64, help="MAR steps per image (recipe: 64)")
    p.add_argument("--diffusion-steps", type=int, default=100, help="diffusion head steps per MAR step (recipe: 100)")
    p.add_argument("--img-size", type=int, default=128, help="tiny image side; 128 = 32x32 latents as 512 px Harmon")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    opts = {"num_iter": args.num_iter, "diffusion_steps": args.diffusion_steps}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_harmon(Path(tmp) / "tiny", img_size=args.img_size, buffer_size=64,
                                      max_positions=4096)
        b = HarmonBackend.load(model_dir, **opts)
        setting = {"group_size": G, "queries_per_step": Q, "image_batch_size": IMAGE_BATCH,
                   "max_new_tokens": args.max_new_tokens, "num_iter": b.num_iter, "diffusion_steps": b.diffusion_steps,
                   "latent_tokens_per_image": (b.generated_image_size // b.model.patch) ** 2,
                   "slots_per_understood_image": b.num_image_tokens, "guidance_scale": b.guidance_scale}
        del b
        result: dict[str, Any] = {"setting": setting, "rlmt": bench_rlmt(model_dir, args.max_new_tokens, opts),
                                  "rlvr": bench_rlvr(model_dir, args.max_new_tokens, opts)}
    result["estimate"] = estimate(result["rlmt"], result["rlvr"], args.max_new_tokens)
    print(json.dumps(result, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
