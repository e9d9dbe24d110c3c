"""The cognitive gap's three failure modes (paper App. A.4.3), classified from a reprompt and its judged image.

* **Type I — naive concatenation (laziness)**: the reprompt mostly repeats the instruction's own words next to the
  prompt ("a cat , make it cute") and the image misses the instruction.
* **Type II — semantic misinterpretation**: the image changed the targeted attributes, but to the wrong values
  (the judge's ``off_target``; "frozen in time" rendered as "covered in ice").
* **Type III — instruction neglect (omission)**: the subject is kept but the requested change is absent.

The order of the checks is the order of the causes: a failed reprompt that parrots the instruction is Type I whatever
the image shows, because the reprompt never translated the instruction; otherwise the image decides II or III.
A success (instruction satisfied, subject kept) is not a failure; a failure that loses the subject and is neither
I nor II is ``other``; a completion without a parseable reprompt is ``format``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from seer.data import difficulty

MODES = ("success", "type_i", "type_ii", "type_iii", "other", "format")
MODE_LABELS = {
    "success": "Success",
    "type_i": "Type I (lazy concatenation)",
    "type_ii": "Type II (misinterpretation)",
    "type_iii": "Type III (omission)",
    "other": "Other (subject lost)",
    "format": "Unparseable reprompt",
}
LAZY_OVERLAP = 0.5  # a reprompt holding at least this fraction of the instruction's content words is a repetition

# function words and the instruction's own verbs of command: repeating them says nothing about laziness
_STOPWORDS = frozenset(
    "a an the it its it's this that these those of to in on at by for with and or but so as is are be make makes "
    "making look looks show render give place put transform turn into entirely more very yet while than image "
    "object picture one some".split()
)
_WORD = re.compile(r"[a-z0-9]+")


def content_words(text: str) -> list[str]:
    """Lower-cased words of ``text`` without function words and command verbs, in order, deduplicated."""
    seen: dict[str, None] = {}
    for w in _WORD.findall(text.lower()):
        if w not in _STOPWORDS and len(w) > 1:
            seen.setdefault(w, None)
    return list(seen)


def instruction_overlap(instruction: str, reprompt: str) -> float:
    """Fraction of the instruction's content words that appear verbatim in the reprompt (0 when it has none)."""
    words = content_words(instruction)
    if not words:
        return 0.0
    have = set(_WORD.findall(reprompt.lower()))
    return sum(w in have for w in words) / len(words)


def is_lazy_concatenation(instruction: str, prompt: str, reprompt: str) -> bool:
    """Type I by text alone: the reprompt repeats most of the instruction's content words."""
    return instruction_overlap(instruction, reprompt) >= LAZY_OVERLAP


def classify(instruction: str, prompt: str, reprompt: str | None, assessment: Any) -> str:
    """One of :data:`MODES` for a reprompt (None = unparseable) and the judge's assessment of its image."""
    if reprompt is None:
        return "format"
    if assessment.satisfied and assessment.subject_kept:
        return "success"
    if is_lazy_concatenation(instruction, prompt, reprompt):
        return "type_i"
    if assessment.off_target:
        return "type_ii"
    if assessment.subject_kept:
        return "type_iii"
    return "other"


@dataclass(frozen=True)
class Classified:
    """One classified reprompt, with what the breakdown needs."""

    case_id: str
    category: str
    distribution: str
    mode: str


def mode_rates(items: Sequence[Classified]) -> dict[str, float]:
    """Fraction of ``items`` in each mode (all of :data:`MODES`, summing to 1), plus ``n``."""
    n = len(items)
    out: dict[str, float] = {"n": n}
    for m in MODES:
        out[m] = (sum(it.mode == m for it in items) / n) if n else float("nan")
    return out


def failure_mode_table(items: Iterable[Classified]) -> dict[str, dict[str, float]]:
    """Mode rates overall and per difficulty (``total``, ``simple``, ``hard``) — A.4.3 notes Type III dominates on
    Hard instructions."""
    items = list(items)
    return {
        "total": mode_rates(items),
        "simple": mode_rates([it for it in items if difficulty(it.category) == "simple"]),
        "hard": mode_rates([it for it in items if difficulty(it.category) == "hard"]),
    }


def classify_system(judge: Any, samples: Sequence[Any], system: Any) -> list[Classified]:
    """Classify every test case of a policy system (``seer.eval.win_ratio.System``) with the judge's assessment of
    its image."""
    out = []
    for s in samples:
        o = system.outputs[s.id]
        mode = classify(s.instruction, s.prompt, o.reprompt, judge.assess(s, system.image(s.id)))
        out.append(Classified(s.id, s.category, s.distribution, mode))
    return out
