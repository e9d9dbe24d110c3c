"""Count the model calls of one RLMT and one RLVR step on a tiny random Janus with Janus-Pro's image-token count
(576 per image), and measure how far a bf16 θ moves under AdamW at the 1B recipe's learning rate. Prints one JSON
object:

    {"rlmt": {PHASE: {"sequential_calls": N, "batch_sizes": [...], ...}, ..., "judge_max_new_tokens": K,
              "cost_model": {...}, "judge_one_context_at_a_time": {...}},
     "rlvr": {...},
     "precision": {"update_norm_ratio": R, "cosine": C, "changed_fraction": F, "changed_fraction_fp32": F32, ...}}

    PYTHONPATH=. python bench/bench_janus_step.py [--max-new-tokens 8] [--steps 10] [--lr 1e-6]

PHASE is rollout, images, judge, update; a "sequential call" is one forward of the language model (the unit a GPU
pays a weight read for in decoding); batch_sizes are the distinct row counts of those calls. The stage code runs
unchanged (``seer.stages.rlmt.rollouts`` / ``rlvr.rollouts`` and ``common.grpo_update``); the only change is that
every reprompt counts as well formed, since a random model rarely writes ``<reprompt> … </reprompt>`` and without
valid reprompts no image would be drawn or judged. ``cost_model`` is ``janus_cost.sequential_calls`` for the same
setting (worst case: no row stops early); the measured counts must not exceed it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seer.backends import janus as janus_mod
from seer.backends.base import SamplingParams
from seer.backends.janus import JanusBackend, build_tiny_janus
from seer.backends.janus_cost import Setting, sequential_calls
from seer.backends.janus_probe import CallCounter, precision_probe
from seer.config import RLMTConfig, RLVRConfig
from seer.data import Quadruplet, Sample
from seer.prompts import Parsed
from seer.stages import common, rlmt, rlvr

G, Q, IMAGE_BATCH = 8, 4, 9  # the recipes' group size, queries per step and image batch


def _update(backend: JanusBackend, groups: list, cfg: Any, counter: CallCounter) -> None:
    opt = torch.optim.AdamW(backend.trainable_parameters(), lr=1e-6)
    with counter.as_phase("update"):
        common.grpo_update(backend, opt, groups, cfg, common.Dist(), n_global=len(groups))


def bench_rlmt(model_dir: Path, k: int) -> dict[str, Any]:
    policy = JanusBackend.load(model_dir, image_batch_size=IMAGE_BATCH)
    judge = JanusBackend.load(model_dir)
    counter = CallCounter(policy, judge)
    policy.generate_text = counter.wrap(policy.generate_text, "rollout")
    policy.generate_images = counter.wrap(policy.generate_images, "images")
    judge.generate_text = counter.wrap(judge.generate_text, "judge")
    cfg = RLMTConfig(evaluator="unused", samples="unused", group_size=G, queries_per_step=Q, max_new_tokens=k,
                     judge_max_new_tokens=k, groups_per_forward=1)
    samples = [Sample(f"s{i}", "make it red", p, "semantic_edit")
               for i, p in enumerate(["a cat", "a dog", "a house", "a tree"])]
    original = rlmt.parse_reprompt
    rlmt.parse_reprompt = lambda text: Parsed(True, "", text.strip() or "a cat")  # see the module docstring
    try:
        groups = rlmt.rollouts(policy, judge, cfg, samples, [11, 12, 13, 14], {k_: 0.0 for k_ in common.TIME_KEYS})
    finally:
        rlmt.parse_reprompt = original
    _update(policy, groups, cfg, counter)
    counter.close()
    out: dict[str, Any] = counter.summary()
    out["judge_max_new_tokens"] = k
    out["cost_model"] = sequential_calls(Setting("1b", "rlmt", group_size=G, queries_per_step=Q, max_new_tokens=k,
                                                 judge_max_new_tokens=k, image_batch_size=IMAGE_BATCH,
                                                 groups_per_forward=1, image_tokens=policy.num_image_tokens))
    # the judge as it ran before (one generate_text per context): the same 32 contexts, counted the same way
    x = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    contexts = rlmt.judge_contexts(cfg, samples[0], x, [x] * G, 11)[0] * Q
    one = CallCounter(judge)
    greedy = SamplingParams(max_new_tokens=k, greedy=True)
    with one.as_phase("judge"):
        for c in contexts:
            JanusBackend.generate_text(judge, [c], 1, greedy)  # the class's method: the instance's is wrapped
    one.close()
    out["judge_one_context_at_a_time"] = one.summary()["judge"]
    return out


def bench_rlvr(model_dir: Path, k: int) -> dict[str, Any]:
    backend = JanusBackend.load(model_dir)
    counter = CallCounter(backend)
    backend.generate_text = counter.wrap(backend.generate_text, "rollout")
    cfg = RLVRConfig(model="unused", quadruplets="unused", group_size=G, queries_per_step=Q, max_new_tokens=k,
                     groups_per_forward=1)
    rng = np.random.default_rng(1)
    quads = [Quadruplet(f"q{i}", 2, "make it red", "a cat", "semantic_edit", "a.png", "b.png") for i in range(Q)]
    images = {q.id: tuple(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(2)) for q in quads}
    groups = rlvr.rollouts(backend, cfg, images, quads, [21, 22, 23, 24], {k_: 0.0 for k_ in common.TIME_KEYS})
    _update(backend, groups, cfg, counter)
    counter.close()
    out: dict[str, Any] = counter.summary()
    out["cost_model"] = sequential_calls(Setting("1b", "rlvr", group_size=G, queries_per_step=Q, max_new_tokens=k,
                                                 groups_per_forward=1, image_tokens=backend.num_image_tokens))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-new-tokens", type=int, default=8, help="rollout and judge completion cap (K)")
    p.add_argument("--steps", type=int, default=10, help="AdamW steps of the precision probe")
    p.add_argument("--lr", type=float, default=1e-6, help="learning rate of the precision probe (1B recipe RLMT)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        real = build_tiny_janus(Path(tmp) / "tiny576", image_size=384, patch_size=16, max_positions=2048)
        result: dict[str, Any] = {"rlmt": bench_rlmt(real, args.max_new_tokens),
                                  "rlvr": bench_rlvr(real, args.max_new_tokens)}
        small = build_tiny_janus(Path(tmp) / "tiny16")
        native = janus_mod.cpu_supports_bf16()
        if not native:  # emulated bf16 kernels: slow, but the rounding of a bf16 θ is the same
            janus_mod.cpu_supports_bf16 = lambda: True
        probe = precision_probe(small, steps=args.steps, lr=args.lr)
    master, fp32 = probe["bfloat16_master_fp32"], probe["float32"]
    result["precision"] = {
        "update_norm_ratio": master["update_norm_ratio"], "cosine": master["cosine"],
        "changed_fraction": master["changed_fraction"], "changed_fraction_fp32": fp32["changed_fraction"],
        "plain_bf16": {k: probe["bfloat16"][k] for k in ("update_norm_ratio", "cosine", "changed_fraction")},
        "steps": args.steps, "lr": args.lr, "cpu_native_bf16": native,
    }
    print(json.dumps(result, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
