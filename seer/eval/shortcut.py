"""Does an evaluator read the instruction, or prefer whichever image was edited? A probe built from test quadruplets.

Every phase-2 quadruplet, in the paper's data (A.1.4) and in the world's, sets an image edited for the instruction
against the plain image of p0, so "which image was changed" answers all of them, and Table 1 cannot tell an evaluator
that reads the instruction from one that only sees a change. This probe can. From the phase-2 test quadruplets it
builds two kinds of pairs, each judged under quadruplet i's instruction and prompt and labelled by the judge (the
world's oracle in ``seer reproduce``):

* ``other_edit``: the image made for instruction i against the image made for another instruction j, same subject.
  Both are edited; an evaluator that reads the instruction picks the first, one that only sees "edited" is at chance.
* ``edit_vs_plain``: the image made for instruction j against the plain p0 image of quadruplet i. Where the judge
  says both fail instruction i (a tie), how often the evaluator picks the edited one is its preference for change
  (0.5 = none).

Each pair is judged greedily in both orders, like Table 1. seer's diagnostic; the paper has no such probe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from seer.data import Quadruplet, Sample, load_image

KINDS = ("other_edit", "edit_vs_plain")


@dataclass(frozen=True)
class ProbePair:
    """One probe pair: ``quad`` holds the two images as ``image_chosen`` / ``image_rejected`` under quadruplet i's
    instruction and prompt; ``preference`` is the judge's for ``image_chosen`` (1, 0, or 0.5 for a tie)."""

    kind: str
    quad: Quadruplet
    preference: float


def probe_pairs(quads: Sequence[Quadruplet], root: str | Path, judge: Any,
                subject_of: Callable[[str], str]) -> list[ProbePair]:
    """Both kinds of pairs for every phase-2 quadruplet that has a partner: the first other quadruplet with another
    instruction and the same subject (``subject_of(prompt)``). Quadruplets without a partner give no pair."""
    from seer.eval.judge import judge_image_size

    root = Path(root)
    size = judge_image_size(judge)
    quads = [q for q in quads if q.phase == 2]

    def pair(kind: str, q: Quadruplet, first: str, second: str) -> ProbePair:
        x, y = (load_image(root / rel, size, where=f"probe pair {q.id}-{kind}: {rel}") for rel in (first, second))
        sample = Sample(q.id, q.instruction, q.prompt, q.category, q.split, q.distribution)
        return ProbePair(kind, replace(q, id=f"{q.id}-{kind}", image_chosen=first, image_rejected=second),
                         float(judge.compare(sample, x, y)))

    subjects = [subject_of(q.prompt) for q in quads]
    pairs = []
    for qi, subject in zip(quads, subjects, strict=True):
        other = next((qj for qj, sj in zip(quads, subjects, strict=True)
                      if qj.instruction != qi.instruction and sj == subject), None)
        if other is None:
            continue
        pairs.append(pair("other_edit", qi, qi.image_chosen, other.image_chosen))
        pairs.append(pair("edit_vs_plain", qi, other.image_chosen, qi.image_rejected))
    return pairs


def score_probe(pairs: Sequence[ProbePair], picks_first: Sequence[tuple[bool, bool]]) -> dict[str, Any]:
    """Split an evaluator's picks (for each pair, whether it named ``image_chosen`` in each order) by kind and by
    the judge's label: accuracy where the judge decides, and the share of picks of ``image_chosen`` on ties (for
    ``edit_vs_plain``, the edited image)."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        decided: list[bool] = []
        ties: list[bool] = []
        for p, picks in zip(pairs, picks_first, strict=True):
            if p.kind != kind:
                continue
            if p.preference == 0.5:
                ties += picks
            else:
                decided += [pick == (p.preference == 1.0) for pick in picks]
        out[kind] = {"accuracy_where_judge_decides": float(np.mean(decided)) if decided else None,
                     "n_decided_judgements": len(decided),
                     "picks_first_on_ties": float(np.mean(ties)) if ties else None,
                     "n_tie_judgements": len(ties)}
    return out


def probe_evaluator(backend: Any, pairs: Sequence[ProbePair], root: str | Path, *,
                    max_new_tokens: int = 64) -> dict[str, Any]:
    """Judge every pair in both orders with ``backend`` (greedy, Table 1's judging) and score it."""
    from seer.eval.evaluator import judge_quadruplets

    if not pairs:
        return score_probe([], [])
    judgments = judge_quadruplets(backend, [p.quad for p in pairs], root, max_new_tokens=max_new_tokens,
                                  desc="shortcut probe")
    return score_probe(pairs, [j.correct for j in judgments])


def judge_summary(pairs: Sequence[ProbePair]) -> dict[str, Any]:
    """How many pairs of each kind, and how the judge labelled them."""
    out = {}
    for kind in KINDS:
        prefs = [p.preference for p in pairs if p.kind == kind]
        out[kind] = {"pairs": len(prefs), "judge_prefers_first": sum(x == 1.0 for x in prefs),
                     "ties": sum(x == 0.5 for x in prefs), "judge_prefers_second": sum(x == 0.0 for x in prefs)}
    return out
