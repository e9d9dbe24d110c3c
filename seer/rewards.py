"""Rewards of the two SEER stages, as pure functions on completion strings.

Each reward takes the completion text first and returns a float in [0, 1]; an unparseable completion earns 0 and
never raises. The total reward of both stages is ``R = R_acc + format_weight · R_format`` (paper Sec. 3.4.2:
"the final reward is R = R_acc + R_format", so the default weight is 1).

* RLVR (Eq. 4 / Sec. 3.4.1): :func:`verdict_reward` — 1 if the evaluator's verdict equals the label.
* RLMT (Eq. 9): :func:`preference_reward` — 1 if the evaluator, shown the reprompt's image x and the baseline x0,
  prefers x.
* Both: :func:`verdict_format_reward`, :func:`reprompt_format_reward` — 1 if the completion follows the format.
"""

from __future__ import annotations

from seer.prompts import parse_reprompt, parse_verdict

VERDICTS = ("A", "B")


def _check_position(position: str, name: str) -> None:
    if position not in VERDICTS:
        raise ValueError(f"{name} must be 'A' or 'B', got {position!r}")


def verdict_reward(completion: str, label: str) -> float:
    """RLVR accuracy reward: 1.0 if the parsed verdict equals ``label`` ('A' or 'B'), else 0.0."""
    _check_position(label, "label")
    parsed = parse_verdict(completion)
    return 1.0 if parsed.ok and parsed.answer == label else 0.0


def verdict_format_reward(completion: str) -> float:
    """1.0 if the completion is ``<think> … </think> <answer> A|B </answer>``, else 0.0."""
    return 1.0 if parse_verdict(completion).ok else 0.0


def reprompt_format_reward(completion: str) -> float:
    """1.0 if the completion is ``<think> … </think> <reprompt> non-empty </reprompt>``, else 0.0."""
    return 1.0 if parse_reprompt(completion).ok else 0.0


def preference_reward(evaluator_completion: str, reprompt_position: str) -> float:
    """Eq. 9: 1.0 if the evaluator's verdict names the position ('A' or 'B') where the reprompt's image x was
    shown, i.e. it prefers x over the naive baseline x0; an unparseable verdict is no preference (0.0)."""
    return verdict_reward(evaluator_completion, reprompt_position)


def total_reward(accuracy: float, format_reward: float, format_weight: float = 1.0) -> float:
    """R = R_acc + format_weight · R_format."""
    return accuracy + format_weight * format_reward
