"""seer's prompt templates and completion formats, in one place.

The paper's templates (App. A.3) were figures that did not survive in our copy of the text, so these are seer's own,
written to carry what the paper says they carry:

* A.3.1 — a reasoning system prompt: think first, inside ``<think> … </think>``, then answer.
* A.3.2 — the pairwise evaluation prompt fuses the three reward dimensions of Eq. 1 (instruction compliance, prompt
  consistency, visual quality) into one holistic question; the verdict is ``<answer> A </answer>`` or ``B``.
* A.3.3 — the reprompting prompt asks for reasoning, then the reprompt inside ``<reprompt> … </reprompt>``.

Every template is overridable: pass a :class:`Templates` with other strings (from a recipe's ``templates:`` block).
The tags are single tokens in the world model's vocabulary, so keep them when overriding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from seer.backends.base import IMAGE_PLACEHOLDER

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
REPROMPT_OPEN, REPROMPT_CLOSE = "<reprompt>", "</reprompt>"
FORMAT_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE, REPROMPT_OPEN, REPROMPT_CLOSE)
NO_INSTRUCTION = "none"  # what the evaluator is told in curriculum phase 1 (basic alignment), which has no instruction


@dataclass(frozen=True)
class Templates:
    """The three prompts of App. A.3. ``{instruction}`` and ``{prompt}`` are filled in; the evaluator template
    must hold two ``<image>`` placeholders, image A first."""

    system: str = "think step by step inside <think> </think> , then give the final answer ."
    evaluator: str = (
        "image A : <image> image B : <image> instruction : {instruction} prompt : {prompt} . "
        "which image correctly follows the instruction while keeping the subject of the prompt recognizable "
        "and having better quality ? answer A or B inside <answer> </answer> ."
    )
    reprompt: str = (
        "instruction : {instruction} prompt : {prompt} . "
        "rewrite the prompt so that the generated image follows the instruction . "
        "write the new prompt inside <reprompt> </reprompt> ."
    )

    def __post_init__(self) -> None:
        if self.evaluator.count(IMAGE_PLACEHOLDER) != 2:
            raise ValueError(f"templates.evaluator must contain exactly two {IMAGE_PLACEHOLDER} placeholders")
        for name in ("evaluator", "reprompt"):
            text = getattr(self, name)
            for field in ("{instruction}", "{prompt}"):
                if field not in text:
                    raise ValueError(f"templates.{name} must contain {field}")

    def evaluator_text(self, instruction: str, prompt: str) -> str:
        body = self.evaluator.format(instruction=instruction.strip() or NO_INSTRUCTION, prompt=prompt.strip())
        return f"{self.system} {body}" if self.system else body

    def reprompt_text(self, instruction: str, prompt: str) -> str:
        body = self.reprompt.format(instruction=instruction.strip(), prompt=prompt.strip())
        return f"{self.system} {body}" if self.system else body


DEFAULT_TEMPLATES = Templates()

_VERDICT = re.compile(
    r"^\s*<think>(?P<think>.*?)</think>\s*<answer>\s*(?P<verdict>[AB])\s*</answer>\s*$", re.DOTALL
)
_REPROMPT = re.compile(
    r"^\s*<think>(?P<think>.*?)</think>\s*<reprompt>(?P<reprompt>.*?)</reprompt>\s*$", re.DOTALL
)


@dataclass(frozen=True)
class Parsed:
    """A parsed completion: ``ok`` is False when the format was not followed (then ``answer`` is None)."""

    ok: bool
    think: str | None
    answer: str | None


def parse_verdict(completion: str) -> Parsed:
    """``<think> … </think> <answer> A|B </answer>`` → the verdict 'A' or 'B'; anything else → not ok."""
    m = _VERDICT.match(completion)
    if not m:
        return Parsed(False, None, None)
    return Parsed(True, m["think"].strip(), m["verdict"])


def parse_reprompt(completion: str) -> Parsed:
    """``<think> … </think> <reprompt> … </reprompt>`` → the reprompt text (non-empty); anything else → not ok."""
    m = _REPROMPT.match(completion)
    if not m or not m["reprompt"].strip():
        return Parsed(False, None, None)
    return Parsed(True, m["think"].strip(), " ".join(m["reprompt"].split()))
