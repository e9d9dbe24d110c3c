"""Tier 1: the GRPO functions against hand-computed values (paper Eq. 6-8)."""

import math

import pytest
import torch

from seer.rl.grpo import clipped_surrogate, group_advantages, grpo_loss, k3_kl, masked_sequence_mean, token_ratio


def test_group_advantages_hand_computed():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 0.0, 1.0, 1.0]])
    adv = group_advantages(r, eps=0.0)
    # group 1: mean 0.5, population std 0.5 -> +-1
    assert torch.allclose(adv[0], torch.tensor([1.0, -1.0, -1.0, 1.0]))
    # group 2: mean 1, std sqrt(0.5)
    s = math.sqrt(0.5)
    assert torch.allclose(adv[1], torch.tensor([1 / s, -1 / s, 0.0, 0.0]))


def test_group_advantages_eps_and_zero_spread():
    r = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    adv = group_advantages(r, eps=0.1)
    assert torch.equal(adv[0], torch.zeros(3))
    assert torch.equal(adv[1], torch.zeros(3))
    std = math.sqrt(2 / 9)
    assert adv[2, 0].item() == pytest.approx((1 - 1 / 3) / (std + 0.1), rel=1e-6)
    with pytest.raises(ValueError, match="queries, group_size"):
        group_advantages(torch.zeros(4))


def test_ratio_and_clip_hand_computed():
    logp = torch.tensor([[math.log(0.5), math.log(0.9)]])
    old = torch.tensor([[math.log(0.25), math.log(0.9)]])
    ratio = token_ratio(logp, old)
    assert torch.allclose(ratio, torch.tensor([[2.0, 1.0]]))
    # positive advantage: min(2*1, 1.2*1) = 1.2 ; negative: min(-2, -1.2) = -2
    assert torch.allclose(clipped_surrogate(ratio, torch.tensor([1.0]), 0.2), torch.tensor([[1.2, 1.0]]))
    assert torch.allclose(clipped_surrogate(ratio, torch.tensor([-1.0]), 0.2), torch.tensor([[-2.0, -1.0]]))
    small = torch.tensor([[0.5]])
    assert torch.allclose(clipped_surrogate(small, torch.tensor([1.0])), torch.tensor([[0.5]]))
    assert torch.allclose(clipped_surrogate(small, torch.tensor([-1.0])), torch.tensor([[-0.8]]))


def test_k3_kl_hand_computed():
    logp = torch.tensor([[math.log(0.5), math.log(0.2)]])
    ref = torch.tensor([[math.log(0.25), math.log(0.2)]])
    kl = k3_kl(logp, ref)
    # ref/p = 0.5: 0.5 - log(0.5) - 1
    assert kl[0, 0].item() == pytest.approx(0.5 - math.log(0.5) - 1)
    assert kl[0, 1].item() == 0.0
    assert (k3_kl(torch.randn(3, 5), torch.randn(3, 5)) >= 0).all()


def test_masked_mean_and_empty_sequence():
    v = torch.tensor([[1.0, 3.0, 100.0], [5.0, 5.0, 5.0]])
    m = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(masked_sequence_mean(v, m), torch.tensor([2.0, 0.0]))


def test_grpo_loss_hand_computed_with_mask():
    # two sequences of lengths 2 and 1 (one pad token whose values must not count)
    logp = torch.tensor([[math.log(0.5), math.log(0.5)], [math.log(0.8), 123.0]], requires_grad=True)
    old = logp.detach()
    ref = torch.tensor([[math.log(0.25), math.log(0.5)], [math.log(0.8), -7.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.0, -1.0])
    loss, stats = grpo_loss(logp, old, ref, adv, mask, epsilon=0.2, beta=0.04)
    kl00 = 0.5 - math.log(0.5) - 1
    seq0 = ((1.0 - 0.04 * kl00) + 1.0) / 2  # ratio 1 -> surrogate = A
    seq1 = -1.0
    assert loss.item() == pytest.approx(-(seq0 + seq1) / 2, abs=1e-6)
    assert stats.kl == pytest.approx((kl00 / 2 + 0.0) / 2, rel=1e-6)
    assert stats.clip_fraction == 0.0 and stats.tokens == 3
    loss.backward()
    # d loss / d logp: seq 0 token 0 -> -(1/2)(A * 1 - beta * d kl) / 2 ; pad token gets no gradient
    assert logp.grad[1, 1].item() == 0.0
    # k3 derivative w.r.t. logp: -exp(ref-logp) + 1 ; at token (0,0) = -0.5 + 1 = 0.5
    expected = -(1.0 - 0.04 * 0.5) / 2 / 2
    assert logp.grad[0, 0].item() == pytest.approx(expected, rel=1e-5)
    # positive advantage pushes log-prob up (negative gradient on the loss), negative advantage down
    assert logp.grad[0, 1].item() < 0 < logp.grad[1, 0].item()


def test_grpo_loss_clip_fraction_off_policy():
    logp = torch.log(torch.tensor([[0.9, 0.5, 0.5, 0.5]]))
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5, 0.9]]))
    _, stats = grpo_loss(logp, old, logp.clone(), torch.tensor([1.0]), torch.ones(1, 4))
    assert stats.clip_fraction == pytest.approx(0.5)  # ratios 1.8 and 0.556 are outside [0.8, 1.2]
    with pytest.raises(ValueError, match="shape mismatch"):
        grpo_loss(logp, old[:, :3], logp, torch.tensor([1.0]), torch.ones(1, 4))
