"""Does an evaluator's verdict follow its own trace? A probe of the world's evaluator priors; prints JSON.

    seer world probe evaluator_follow --data DIR EVALUATOR [EVALUATOR ...] [--n 48] [--k 8]

The judged, balanced and paths priors of ``seer world pretrain`` write a trace that judges each image ("image A shows
… . prompt yes ." — the paths prior opens with what it checks, "instruction :" or "prompt :") before the verdict.
RLVR can only make such an evaluator read the instruction if its verdict names the image its trace passed. For the
first ``--n`` training quadruplets of each curriculum phase in ``--data`` (``seer world build-data`` output), the
chosen image is put at A or B by a seeded coin and ``--k`` completions are sampled. Per phase:

* ``judged``: completions whose trace judges both images (the shipped "captions" prior judges none);
* ``follow``: where exactly one image passes, how often the verdict names it;
* ``judgement_right``: where exactly one image passes, how often it is the chosen one;
* ``instruction_path``: completions that open with "instruction :" (paths prior), and the accuracy on each path.

Measured on 2026-11-21 (docs/world_log.md, "A lead for the evaluator"): a fine-tune whose verdict had
learned to follow its trace behind text-only contexts followed it 0.99 (phase 1) and 0.97 (phase 2) of the time here.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

TRACE = re.compile(r"<think> (?:(prompt|instruction) : )?image A shows [^.<]*\. (\w+) (yes|no) \. "
                   r"image B shows [^.<]*\. \w+ (yes|no) \.")
VERDICT = re.compile(r"<answer> ([AB]) </answer>")


def contexts(data: Path, phase: int, n: int, seed: int):
    """Evaluator contexts of the first ``n`` training quadruplets of ``phase`` (the chosen image at A or B by a seeded
    coin, as ``seer world report`` shows them), and the position of the chosen image."""
    from seer.data import load_quadruplets
    from seer.world.report import shuffled_pairs

    path = data / "quadruplets_train.jsonl"
    quads = [q for q in load_quadruplets(path) if q.phase == phase][:n]
    return shuffled_pairs(quads, path, np.random.default_rng([seed, phase]))


def score(texts: list[list[str]], labels: list[str]) -> dict[str, float | int]:
    """The rates above for sampled completions ``texts[i]`` of pairs whose chosen image is at ``labels[i]``."""
    n = judged = one = follow = right = instr = 0
    correct = {"instruction": [], "prompt": []}
    for row, label in zip(texts, labels, strict=True):
        for text in row:
            n += 1
            m, v = TRACE.search(text), VERDICT.search(text)
            verdict = v.group(1) if v else None
            if not m:
                continue
            judged += 1
            path, _, ja, jb = m.groups()
            if path:
                instr += path == "instruction"
                correct[path].append(verdict == label)
            if ja != jb:
                passed = "A" if ja == "yes" else "B"
                one += 1
                follow += verdict == passed
                right += passed == label
    rate = lambda a, b: round(a / b, 3) if b else None  # noqa: E731
    return {"completions": n, "judged": rate(judged, n), "one_passes": one, "follow": rate(follow, one),
            "judgement_right": rate(right, one), "instruction_path": rate(instr, judged),
            "accuracy_instruction_path": rate(sum(correct["instruction"]), len(correct["instruction"])),
            "accuracy_prompt_path": rate(sum(correct["prompt"]), len(correct["prompt"]))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="seer world probe evaluator_follow", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a `seer world build-data` output directory")
    ap.add_argument("evaluators", nargs="+", help="model directories (runs/…/rlvr/model, seer/world/assets/base/umm)")
    ap.add_argument("--n", type=int, default=48, help="training quadruplets per phase")
    ap.add_argument("--k", type=int, default=8, help="sampled completions per pair")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from seer.backends.base import SamplingParams, load_backend

    data = Path(args.data)
    pairs = {phase: contexts(data, phase, args.n, args.seed) for phase in (1, 2)}
    out = {}
    for path in args.evaluators:
        backend = load_backend(path)
        out[path] = {}
        for phase, (ctxs, labels) in pairs.items():
            rows = backend.generate_text(ctxs, args.k, SamplingParams(max_new_tokens=72), seed=args.seed + 1)
            out[path][f"phase{phase}"] = score([[c.text for c in row] for row in rows], labels)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
