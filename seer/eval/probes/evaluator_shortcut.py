"""Does an evaluator read the instruction, or prefer whichever image was edited? A probe of the world; prints JSON.

    seer world probe evaluator_shortcut --data DIR EVALUATOR [EVALUATOR ...]

Every phase-2 quadruplet sets an edited image against the plain image of p0, so "which image was changed" answers
all of them. This probe builds two kinds of pairs from the test quadruplets of ``--data`` (``seer world build-data``
output), each labelled by the world's oracle under quadruplet i's instruction and prompt:

* ``other_edit``: the image made for instruction i vs the image made for another instruction j, same subject. An
  evaluator that reads the instruction picks the first; one that only sees "edited" is at chance.
* ``edit_vs_plain``: the image made for instruction j vs the plain p0 image of quadruplet i. When the oracle says
  both fail instruction i (a tie), how often the evaluator picks the edited one is its preference for change.

Each pair is judged greedily in both orders (``seer.eval.shortcut``; ``seer reproduce`` runs the same probe as its
``shortcut`` step). EVALUATOR is a model directory (``runs/…/rlvr/model``, the shipped
``seer/world/assets/base/umm``). Measured on the full ``seer reproduce`` run of 2026-11-21 (docs/world_log.md):
SEER-Eval 0.43 on ``other_edit`` (zero-shot 0.50) and picks the edited image on 92% of the ``edit_vs_plain`` ties
(zero-shot 49%). On the run of 2026-12-02 (the base shipped since; 91 pairs of each kind, 22 s): SEER-Eval 0.40
(zero-shot 0.54) and 95.5% of the ties (zero-shot 43%).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    import torch

    from seer.data import load_quadruplets
    from seer.eval import shortcut as SC
    from seer.eval.common import open_checkpoint
    from seer.world import load_base
    from seer.world import semantics as S

    ap = argparse.ArgumentParser(prog="seer world probe evaluator_shortcut", description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a `seer world build-data` directory (quadruplets_test.jsonl)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("evaluators", nargs="+", help="evaluator model directories")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, oracle, _ = load_base(None)
    data = Path(args.data)
    pairs = SC.probe_pairs(load_quadruplets(data / "quadruplets_test.jsonl"), data, oracle,
                           lambda p: S.prompt_attributes(p)["subject"])
    out = {"judge": SC.judge_summary(pairs)}
    for path in args.evaluators:
        out[path] = SC.probe_evaluator(open_checkpoint(path), pairs, data)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
