"""Tier 1: rewards on plain strings; unparseable completions earn 0 and never crash."""

import pytest

from seer.rewards import (
    preference_reward,
    reprompt_format_reward,
    total_reward,
    verdict_format_reward,
    verdict_reward,
)

GOOD_A = "<think> image A shows ice </think> <answer> A </answer>"
GOOD_B = "<think>b</think><answer>B</answer>"
BAD = ["", "A", "<answer> A </answer>", "<think> x </think> <answer> C </answer>", "<think> x <answer>A</answer>",
       "<think> x </think> <answer> A </answer> trailing", "\x00<<<>>>", "<think></think><answer>AB</answer>"]


def test_verdict_reward():
    assert verdict_reward(GOOD_A, "A") == 1.0
    assert verdict_reward(GOOD_A, "B") == 0.0
    assert verdict_reward(GOOD_B, "B") == 1.0
    for text in BAD:
        assert verdict_reward(text, "A") == 0.0
        assert verdict_format_reward(text) == 0.0
    with pytest.raises(ValueError, match="label"):
        verdict_reward(GOOD_A, "a")


def test_verdict_format_reward():
    assert verdict_format_reward(GOOD_A) == 1.0
    assert verdict_format_reward(GOOD_B) == 1.0


def test_reprompt_format_reward():
    assert reprompt_format_reward("<think> ice is cold </think> <reprompt> an ice cat </reprompt>") == 1.0
    for text in ["<think> x </think> <reprompt> </reprompt>", "<reprompt> a cat </reprompt>", GOOD_A, "", "<think>"]:
        assert reprompt_format_reward(text) == 0.0


def test_preference_reward_eq9():
    assert preference_reward(GOOD_A, "A") == 1.0  # reprompt image shown as A, evaluator picks A
    assert preference_reward(GOOD_A, "B") == 0.0  # evaluator prefers the naive baseline
    assert preference_reward("garbled", "A") == 0.0


def test_total_reward():
    assert total_reward(1.0, 1.0) == 2.0
    assert total_reward(0.0, 1.0, format_weight=0.5) == 0.5
    assert total_reward(1.0, 0.0, format_weight=0.0) == 1.0
