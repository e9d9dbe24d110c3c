"""Does an evaluator read the instruction, or prefer whichever image was edited? A probe of the world; prints JSON.

    python bench/evaluator_shortcut.py --data DIR EVALUATOR [EVALUATOR ...]

Every phase-2 quadruplet sets an edited image against the plain image of p0, so "which image was changed" answers
all of them. This probe builds two kinds of pairs from the test quadruplets of ``--data`` (``seer world build-data``
output), each labelled by the world's oracle under quadruplet i's instruction and prompt:

* ``other_edit``: the image made for instruction i vs the image made for another instruction j, same subject. An
  evaluator that reads the instruction picks the first; one that only sees "edited" is at chance.
* ``edit_vs_plain``: the image made for instruction j vs the plain p0 image of quadruplet i. When the oracle says
  both fail instruction i (a tie), how often the evaluator picks the edited one is its preference for change.

Each pair is judged greedily in both orders. EVALUATOR is a model directory (``runs/…/rlvr/model``, the shipped
``seer/world/assets/base/umm``). Measured on the full ``seer reproduce`` run of 2026-11-21 (docs/world_log.md):
SEER-Eval 0.43 on ``other_edit`` (zero-shot 0.50) and picks the edited image on 92% of the ``edit_vs_plain`` ties
(zero-shot 49%). On the run of 2026-12-02 (the base shipped since; 91 pairs of each kind, 22 s): SEER-Eval 0.40
(zero-shot 0.54) and 95.5% of the ties (zero-shot 43%).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from seer.data import Quadruplet


def build_pairs(data: Path, oracle) -> list[tuple[str, Quadruplet, float]]:
    """(kind, the pair as a quadruplet of existing images under quadruplet i's instruction and prompt, the oracle's
    preference for its ``image_chosen``: 1, 0 or 0.5 for a tie)."""
    from seer.data import load_image, load_quadruplets
    from seer.world import semantics as S

    quads = [q for q in load_quadruplets(data / "quadruplets_test.jsonl") if q.phase == 2]

    def pair(kind: str, q: Quadruplet, first: str, second: str) -> tuple[str, Quadruplet, float]:
        x, y = (load_image(data / rel, (32, 32), where=f"{data}: {rel}") for rel in (first, second))
        rx, ry = oracle.read([x, y])
        pref = oracle.preference(oracle.assess_read(q.instruction, q.prompt, rx),
                                 oracle.assess_read(q.instruction, q.prompt, ry))
        return kind, replace(q, id=f"{q.id}-{kind}", image_chosen=first, image_rejected=second), pref

    pairs = []
    for qi in quads:
        subject = S.prompt_attributes(qi.prompt)["subject"]
        other = next((qj for qj in quads if qj.instruction != qi.instruction
                      and S.prompt_attributes(qj.prompt)["subject"] == subject), None)
        if other is None:
            continue
        pairs.append(pair("other_edit", qi, qi.image_chosen, other.image_chosen))
        pairs.append(pair("edit_vs_plain", qi, other.image_chosen, qi.image_rejected))
    return pairs


def probe(backend, pairs, data: Path) -> dict:
    """Judge every pair in both orders (``seer eval``'s own greedy judging) and split by kind and oracle label."""
    from seer.eval.evaluator import judge_quadruplets

    judgments = judge_quadruplets(backend, [q for _, q, _ in pairs], data, desc="probing")
    res = {}
    for kind in ("other_edit", "edit_vs_plain"):
        decided, ties = [], []
        for (pk, _, pref), j in zip(pairs, judgments, strict=True):
            if pk != kind:
                continue
            picks_first = list(j.correct)  # image_chosen named in each order
            if pref == 0.5:
                ties += picks_first
            else:
                decided += [p == (pref == 1.0) for p in picks_first]
        res[kind] = {"accuracy_where_oracle_decides": round(float(np.mean(decided)), 3) if decided else None,
                     "n_decided_judgements": len(decided),
                     "picks_first_image_on_oracle_ties": round(float(np.mean(ties)), 3) if ties else None,
                     "n_tie_judgements": len(ties)}
    return res


def main() -> None:
    import torch

    from seer.eval.common import open_checkpoint
    from seer.world import load_base

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a `seer world build-data` directory (quadruplets_test.jsonl)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("evaluators", nargs="+", help="evaluator model directories")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    _, oracle, _ = load_base(None)
    pairs = build_pairs(Path(args.data), oracle)
    out = {"pairs": {k: sum(p[0] == k for p in pairs) for k in ("other_edit", "edit_vs_plain")},
           "oracle_prefers_first": {k: round(float(np.mean([p[2] for p in pairs if p[0] == k])), 3)
                                    for k in ("other_edit", "edit_vs_plain")}}
    for path in args.evaluators:
        out[path] = probe(open_checkpoint(path), pairs, Path(args.data))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
