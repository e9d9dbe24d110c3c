"""Per-step time split and throughput of both SEER stages on the tiny random token UMM; prints JSON.

    python bench/bench_stages.py [--steps 6] [--group-size 8] [--queries 4] [--threads 1]

The tiny model first learns the two completion formats by a few teacher-forced steps (a random model almost never
writes a parseable reprompt, so RLMT would draw no images and judge nothing). Then each stage runs ``--steps`` GRPO
steps through ``seer.stages.<stage>.train``; the figures are means over the steps after the first (warm-up) one,
read from the run's metrics.jsonl: seconds per step in text rollout, image generation, evaluator judging and the
policy update, and completions per second.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from seer.backends.base import Context
from seer.backends.token_umm import tiny_random_backend
from seer.config import RLMTConfig, RLVRConfig, load_config
from seer.data import Quadruplet, Sample, load_image, save_image, write_jsonl
from seer.prompts import DEFAULT_TEMPLATES
from seer.stages import rlmt, rlvr

FORMAT_EXAMPLES = [
    ("verdict", "<think> image A is red </think> <answer> A </answer>"),
    ("verdict", "<think> image B is red </think> <answer> B </answer>"),
    ("reprompt", "<think> ice is cold </think> <reprompt> a cat made of ice </reprompt>"),
    ("reprompt", "<think> red </think> <reprompt> a red cat </reprompt>"),
]
TIME_KEYS = ("time_rollout", "time_images", "time_judge", "time_update")


def make_world(root: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(4):
        save_image(root / "img" / f"{i}.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    prompts = ["a cat", "a red ball", "a dog", "a small house", "a blue car", "a green tree"]
    quads = [Quadruplet(f"p{ph}-{i}", ph, "" if ph == 1 else "turn it into ice", prompts[i % len(prompts)],
                        "material_synthesis", f"img/{i % 4}.png", f"img/{(i + 1) % 4}.png")
             for ph in (1, 2) for i in range(n)]
    write_jsonl(root / "quadruplets.jsonl", quads)
    write_jsonl(root / "samples.jsonl", [Sample(f"s{i}", "turn it into ice", prompts[i % len(prompts)],
                                                "material_synthesis") for i in range(n)])
    backend = tiny_random_backend(seed=seed)
    pair = (load_image(root / "img/0.png"), load_image(root / "img/1.png"))
    contexts = {"verdict": Context(DEFAULT_TEMPLATES.evaluator_text("make it red", "a cat"), pair),
                "reprompt": DEFAULT_TEMPLATES.reprompt_text("turn it into ice", "a cat")}
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(backend.trainable_parameters(), lr=1e-2)
    batch = backend.collate([backend.encode_text_example(contexts[kind], text) for kind, text in FORMAT_EXAMPLES])
    for _ in range(40):  # teacher forcing on the formats only
        backend.model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
        backend.after_optimizer_step()
    backend.set_reference()
    backend.save(root / "base")


def summarise(run_dir: Path) -> dict[str, float]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = rows[1:] if len(rows) > 1 else rows  # the first step pays one-off costs
    out = {k.removeprefix("time_") + "_s_per_step": float(np.mean([r[k] for r in rows])) for k in TIME_KEYS}
    out["step_s"] = sum(out[k.removeprefix("time_") + "_s_per_step"] for k in TIME_KEYS)
    out["samples_per_s"] = float(np.mean([r["samples_per_s"] for r in rows]))
    out["steps_measured"] = len(rows)
    out["format_failure_rate"] = float(np.mean([r["format_failure_rate"] for r in rows]))
    out["completion_length_mean"] = float(np.mean([r["completion_length_mean"] for r in rows]))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--queries", type=int, default=4, help="queries per step")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    common = ["--group_size", str(args.group_size), "--queries_per_step", str(args.queries), "--max_new_tokens",
              str(args.max_new_tokens), "--max_steps", str(args.steps), "--seed", str(args.seed),
              "--tensorboard", "false", "--save_every", "1000", "--sample_every", "1000"]
    result: dict = {"backend": "tiny_random_backend (hidden 32, 2 layers, 16x16 images = 16 tokens)",
                    "group_size": args.group_size, "queries_per_step": args.queries,
                    "max_new_tokens": args.max_new_tokens, "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_world(root, n=args.queries * args.steps, seed=args.seed)
        t0 = time.perf_counter()
        cfg = load_config(RLVRConfig, None, ["--model", str(root / "base"), "--quadruplets",
                                             str(root / "quadruplets.jsonl"), "--output_dir", str(root / "runs"),
                                             "--epochs_phase1", "1", "--epochs_phase2", "1", *common])
        result["rlvr"] = {**summarise(rlvr.train(cfg)), "wall_s": time.perf_counter() - t0}
        t0 = time.perf_counter()
        cfg = load_config(RLMTConfig, None, ["--evaluator", str(root / "runs" / "seer" / "rlvr"), "--samples",
                                             str(root / "samples.jsonl"), "--output_dir", str(root / "runs"),
                                             "--epochs", "1", *common])
        result["rlmt"] = {**summarise(rlmt.train(cfg)), "wall_s": time.perf_counter() - t0}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
