"""GRPO as pure functions (paper Sec. 3.4.1 Eq. 6–8, Sec. 3.4.2 Eq. 10–11).

One update, read top to bottom: rewards (Q, G) → :func:`group_advantages` → per-token :func:`token_ratio` →
:func:`clipped_surrogate` − β · :func:`k3_kl` → :func:`grpo_loss` (mean over each sequence's tokens, then over
sequences). Every function takes plain tensors, so tests can check them against hand-computed values.

How seer departs from the paper, or fills in what its text leaves open:

* **std in Eq. 8** is the population standard deviation of the group (``unbiased=False``); the paper does not say
  which. A group whose rewards are all equal (zero spread) gets advantage exactly 0 — it carries no signal — rather
  than ``0 / eps``.
* **eps** in Eq. 8 is 1e-4 and is added to the std (the paper writes only ``std``).
* **μ = 1** (one iteration per update, as the paper): the old policy is the current one, so ``logp_old`` is
  ``logp.detach()``, the ratio is 1 in value and the clip never binds; the clipped surrogate is still computed so
  that μ > 1 (or off-policy rollouts) would need no new code, and the clip fraction is logged.
* **KL** uses the k3 estimator ``exp(ref − logp) − (ref − logp) − 1`` per token (as DeepSeekMath's GRPO), β = 0.04.
* **Padding**: sequences are right-padded; ``mask`` selects real tokens. A sequence with no tokens contributes 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EPSILON = 0.2  # clip range ε of Eq. 6
BETA = 0.04  # KL coefficient β (paper Sec. 4.1)
ADV_EPS = 1e-4  # added to the group std in Eq. 8


def group_advantages(rewards: torch.Tensor, eps: float = ADV_EPS) -> torch.Tensor:
    """Eq. 8: ``A_i = (r_i − mean(r)) / (std(r) + eps)`` within each group. ``rewards`` is (Q, G) for Q queries
    with G samples each; returns (Q, G). Zero-spread groups give exactly 0."""
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be (queries, group_size), got shape {tuple(rewards.shape)}")
    rewards = rewards.float()
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=False)
    adv = (rewards - mean) / (std + eps)
    return torch.where(std > 0, adv, torch.zeros_like(adv))


def token_ratio(logp: torch.Tensor, logp_old: torch.Tensor) -> torch.Tensor:
    """Eq. 7 / Eq. 10: the per-token importance ratio ``ρ = π_θ / π_θ_old = exp(logp − logp_old)``, (B, T)."""
    return torch.exp(logp - logp_old)


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, epsilon: float = EPSILON) -> torch.Tensor:
    """Eq. 6: ``min(ρ A, clip(ρ, 1 − ε, 1 + ε) A)`` per token. ``ratio`` (B, T), ``advantages`` (B,) — one
    advantage per sequence, broadcast over its tokens."""
    adv = advantages.reshape(-1, 1)
    return torch.minimum(ratio * adv, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * adv)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(π_θ ‖ π_ref): ``exp(ref − logp) − (ref − logp) − 1`` ≥ 0, (B, T)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def masked_sequence_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each sequence's real tokens: (B, T) → (B,). Empty sequences give 0."""
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


@dataclass
class GRPOStats:
    """Diagnostics of one loss evaluation (plain floats, for logging)."""

    loss: float
    kl: float  # mean per-token k3 KL (token mean per sequence, then mean over sequences)
    clip_fraction: float  # fraction of real tokens whose ratio lies outside [1 − ε, 1 + ε]
    tokens: int


def grpo_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float = EPSILON,
    beta: float = BETA,
) -> tuple[torch.Tensor, GRPOStats]:
    """Eq. 6 as a loss to minimise: ``−mean_i [ mean_t ( min(ρA, clip(ρ)A) − β KL_t ) ]``.

    ``logp`` (B, T) carries grad through θ; ``logp_old`` and ``ref_logp`` (B, T) do not; ``advantages`` (B,);
    ``mask`` (B, T) is 1.0 on real tokens. Returns the scalar loss and its diagnostics."""
    if not (logp.shape == logp_old.shape == ref_logp.shape == mask.shape):
        raise ValueError(
            f"shape mismatch: logp {tuple(logp.shape)}, logp_old {tuple(logp_old.shape)}, "
            f"ref_logp {tuple(ref_logp.shape)}, mask {tuple(mask.shape)}"
        )
    mask = mask.to(logp.dtype)
    ratio = token_ratio(logp, logp_old)
    surrogate = clipped_surrogate(ratio, advantages.to(logp.dtype), epsilon)
    kl = k3_kl(logp, ref_logp)
    per_token = surrogate - beta * kl  # (B, T)
    loss = -masked_sequence_mean(per_token, mask).mean()
    with torch.no_grad():
        clipped = ((ratio < 1 - epsilon) | (ratio > 1 + epsilon)).to(mask.dtype) * mask
        n_tokens = int(mask.sum().item())
        stats = GRPOStats(
            loss=float(loss.detach()),
            kl=float(masked_sequence_mean(kl, mask).mean()),
            clip_fraction=float(clipped.sum() / max(n_tokens, 1)),
            tokens=n_tokens,
        )
    return loss, stats
