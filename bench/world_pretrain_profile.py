"""Profile world v2 pretraining steps (issue 20): seconds per optimizer step by model size, corpus kind, dtype and
threads, before choosing the base's size and schedule. Prints JSON.

    python bench/world_pretrain_profile.py [--sizes 192x4,256x6] [--threads 2] [--bf16] [--batch 64] [--reps 3]

Each size is a fresh random model (ϕ rows factorised as in ``PretrainNet``, a random vision encoder: its weights do
not change the cost); each kind's batch is built once and stepped ``--reps`` times after one warm-up step.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="192x4,256x6")
    ap.add_argument("--kinds", default="generate,describe,judge,evaluate_checked,reprompt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    from transformers import LlamaForCausalLM

    from seer.backends.image_tokenizer import PatchCodebook
    from seer.backends.text_tokenizer import collect_words
    from seer.backends.token_umm import TokenUMMBackend, VisionInput
    from seer.world import corpus as C
    from seer.world import load_base
    from seer.world.pretrain import PretrainNet
    from seer.world.vision import Aligner, EncoderConfig, VisionEncoder, code_features

    torch.set_num_threads(args.threads)
    codebook: PatchCodebook = load_base()[0].image_tokenizer
    encoder = VisionEncoder(EncoderConfig()).requires_grad_(False)
    words = collect_words(C.vocabulary_texts())
    rng = np.random.default_rng(0)
    results = []
    for size in args.sizes.split(","):
        hidden, layers = (int(x) for x in size.split("x"))
        b0 = TokenUMMBackend.create(words, codebook, hidden=hidden, layers=layers, heads=4 if hidden < 256 else 8)
        llm = LlamaForCausalLM(b0.model.config)
        span = (b0.image_start, b0.num_image_codes, codebook.tokens_per_image, b0.boi_id, b0.eoi_id, b0.gen_id)
        net = PretrainNet(llm, VisionInput(encoder, Aligner(encoder.cfg.dim, hidden), codebook.centroids,
                                           codebook._perm), span, code_features(encoder, codebook.centroids))
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
        row = {"hidden": hidden, "layers": layers, "params": sum(p.numel() for p in llm.parameters()),
               "threads": args.threads, "bf16": args.bf16, "batch": args.batch, "s_per_step": {}, "tokens": {}}
        for kind in args.kinds.split(","):
            t0 = time.time()
            batch = b0.collate([C.encode(b0, C.make_example(kind, rng)) for _ in range(args.batch)])
            build = time.time() - t0
            times = []
            for rep in range(args.reps + 1):
                t0 = time.time()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                    loss = net(**batch)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if rep:
                    times.append(time.time() - t0)
            row["s_per_step"][kind] = round(float(np.median(times)), 3)
            row["tokens"][kind] = int(batch["attention_mask"].sum())
            row.setdefault("build_s", {})[kind] = round(build, 3)
        mix = C.MIX_V2
        row["mix_weighted_s_per_step"] = round(sum(mix.get(k, 0) * v for k, v in row["s_per_step"].items())
                                               / sum(mix.get(k, 0) for k in row["s_per_step"]), 3)
        results.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
