"""Alignment losses as pure functions: per-sequence tensors in, mean loss out.

Conventions: energies ``U`` are *lower-is-better*; ``*_logps`` are sequence log-probabilities
(sums over tokens) of the two members of each pair, shape ``[P]``.

Energy Rank Alignment (ERA)
    With β' = β/(1+γ) and γ' = γ/(1+γ),

        ℓ_π = log π(y₂) − log π(y₁)                                  (policy logit)
        ℓ*  = −β'(U₂ − U₁) + γ'(log π_ref(y₂) − log π_ref(y₁))       (target logit)

    and the loss is the KL divergence between Bernoulli(σ(ℓ*)) and Bernoulli(σ(ℓ_π)), averaged
    over pairs — forward, KL(target ‖ policy), by default; reverse, KL(policy ‖ target), as an
    option. It is zero exactly when ℓ_π = ℓ* for every pair, i.e. at
    π* ∝ exp(−β'U + γ' log π_ref) (the Boltzmann distribution e^{−βU} when γ = 0).

Direct Preference Optimisation (DPO), the baseline
    The preferred sequence y_w is the one with lower energy;
        loss = −log σ(β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))]).
    Pairs with equal energies carry no preference and are left out of the mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_finite(name: str, tensor: torch.Tensor) -> None:
    if not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).sum().item()
        raise ValueError(f"{name} has {bad} non-finite value(s); map invalid samples to a penalty "
                         "energy in the oracle instead of training on NaN/inf")


def era_scales(beta: float, gamma: float) -> tuple[float, float]:
    """ERA's effective inverse temperature and reference weight, β' = β/(1+γ) and γ' = γ/(1+γ)."""
    if beta < 0 or gamma < 0:
        raise ValueError(f"beta and gamma must be >= 0, got beta={beta}, gamma={gamma}")
    return beta / (1 + gamma), gamma / (1 + gamma)


def era_logits(pi_logps_1, pi_logps_2, ref_logps_1, ref_logps_2, energies_1, energies_2,
               beta: float, gamma: float, max_shift: float | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy logit ℓ_π and the target logit ℓ* of ERA (see the module docstring).

    ``max_shift`` (nats, optional) bounds how far a pair's target odds may move from the
    reference's own odds ℓ_ref = log π_ref(y₂) − log π_ref(y₁): ℓ* ← clamp(ℓ*, ℓ_ref − c, ℓ_ref + c).
    A per-pair trust region for weak references (docs/design.md): pairs whose exact target lies
    within c of ℓ_ref keep it, the others ask for c nats in the right direction, so the minimiser
    is π* only when no pair is clipped.
    """
    beta_p, gamma_p = era_scales(beta, gamma)
    check_finite("energies_1", energies_1)
    check_finite("energies_2", energies_2)
    policy = pi_logps_2 - pi_logps_1
    ref = ref_logps_2 - ref_logps_1
    target = -beta_p * (energies_2 - energies_1) + gamma_p * ref
    if max_shift is not None:
        if max_shift <= 0:
            raise ValueError(f"max_shift must be > 0 nats (or None for the exact target), got {max_shift}")
        target = torch.clamp(target, ref - max_shift, ref + max_shift)
    return policy, target.detach()


def bernoulli_kl(logit_p: torch.Tensor, logit_q: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(σ(logit_p)) ‖ Bernoulli(σ(logit_q))), elementwise, computed in log space."""
    p = torch.sigmoid(logit_p)
    return (p * (F.logsigmoid(logit_p) - F.logsigmoid(logit_q))
            + (1 - p) * (F.logsigmoid(-logit_p) - F.logsigmoid(-logit_q)))


def era_loss(pi_logps_1: torch.Tensor, pi_logps_2: torch.Tensor, ref_logps_1: torch.Tensor,
             ref_logps_2: torch.Tensor, energies_1: torch.Tensor, energies_2: torch.Tensor,
             beta: float = 1.0, gamma: float = 0.0, reverse_kl: bool = False,
             max_shift: float | None = None) -> torch.Tensor:
    """Mean ERA loss over pairs: KL(σ(ℓ*) ‖ σ(ℓ_π)), or KL(σ(ℓ_π) ‖ σ(ℓ*)) with ``reverse_kl``;
    ``max_shift`` bounds each target to within that many nats of the reference's odds
    (see ``era_logits``)."""
    policy, target = era_logits(pi_logps_1, pi_logps_2, ref_logps_1, ref_logps_2, energies_1,
                                energies_2, beta, gamma, max_shift)
    kl = bernoulli_kl(policy, target) if reverse_kl else bernoulli_kl(target, policy)
    return kl.mean()


def dpo_loss(pi_logps_1: torch.Tensor, pi_logps_2: torch.Tensor, ref_logps_1: torch.Tensor,
             ref_logps_2: torch.Tensor, energies_1: torch.Tensor, energies_2: torch.Tensor,
             beta: float = 0.1) -> torch.Tensor:
    """Mean DPO loss with the lower-energy member of each pair preferred; ties are skipped."""
    check_finite("energies_1", energies_1)
    check_finite("energies_2", energies_2)
    # +1 when y₂ is preferred (lower energy), −1 when y₁ is, 0 for ties
    sign = torch.sign(energies_1 - energies_2)
    margin = (pi_logps_2 - ref_logps_2) - (pi_logps_1 - ref_logps_1)
    losses = -F.logsigmoid(beta * sign * margin)
    keep = sign != 0
    if not keep.any():
        return (margin * 0).sum()  # no preference in this batch: zero, still differentiable
    return losses[keep].mean()


def nll_loss(pi_logps: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of sequences (an optional SFT term that keeps samples on-manifold)."""
    return -pi_logps.mean()


# ---------------------------------------------------------------------------------------------
# Policy-gradient updates for multi-objective fine-tuning (Rewarded Soups, IRS, MORLHF).
# Rewards are r = −U (higher is better). ``token_logps`` are per-token log-probabilities [n, T]
# with zeros at padding and ``mask`` [n, T] marking the real tokens.
# ---------------------------------------------------------------------------------------------


def leave_one_out_advantages(rewards: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
    """RLOO advantages: Aᵢ = rᵢ − mean_{j≠i} rⱼ within each group of ``group_size`` consecutive
    samples (the whole batch when ``None``). An unbiased baseline that needs no value network —
    the reason RLOO is a strong simple choice for small models."""
    check_finite("rewards", rewards)
    n = rewards.numel()
    k = n if group_size is None else group_size
    if k < 2 or n % k:
        raise ValueError(f"leave-one-out needs groups of ≥ 2 that divide the batch; got {n} samples, groups of {k}")
    r = rewards.reshape(-1, k)
    baseline = (r.sum(1, keepdim=True) - r) / (k - 1)
    return (r - baseline).reshape(rewards.shape)


def group_normalised_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(r − mean r) / (std r + eps) over the batch: PPO's advantage with a group baseline in
    place of a learned value function."""
    check_finite("rewards", rewards)
    centred = rewards - rewards.mean()
    return centred / (rewards.std(unbiased=False) + eps) if rewards.numel() > 1 else centred * 0


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1)


def ppo_clip_loss(token_logps: torch.Tensor, old_token_logps: torch.Tensor, advantages: torch.Tensor,
                  mask: torch.Tensor, clip: float = 0.2) -> torch.Tensor:
    """PPO's clipped surrogate, per token, averaged over real tokens:

        ρₜ = exp(log π(aₜ) − log π_old(aₜ)),
        loss = mean_t max(−A ρₜ, −A clip(ρₜ, 1 − ε, 1 + ε)),

    with the sequence's advantage A shared by its tokens. Inside the clip region the gradient is
    the policy gradient −A ∇ρ; outside (ρ > 1+ε with A > 0, ρ < 1−ε with A < 0) it is zero, so one
    batch cannot push the policy far from the one that sampled it."""
    check_finite("advantages", advantages)
    ratio = torch.exp(token_logps - old_token_logps.detach())
    adv = advantages.detach().unsqueeze(-1)
    surrogate = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip))
    return masked_mean(surrogate, mask)


def kl_penalty(token_logps: torch.Tensor, ref_token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(π ‖ π_ref) on samples from π (Schulman's k3 estimator):
    exp(Δ) − Δ − 1 with Δ = log π_ref − log π; non-negative, zero exactly when the two agree, and
    its gradient pulls π towards π_ref. Added to a loss with a positive coefficient."""
    delta = ref_token_logps.detach() - token_logps
    return masked_mean(torch.exp(delta) - delta - 1, mask)


def reinforce_loss(pi_logps: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """−mean(A · log π(y)): the score-function (REINFORCE) gradient with fixed advantages, which is
    what RLOO optimises with leave-one-out advantages."""
    check_finite("advantages", advantages)
    return -(advantages.detach() * pi_logps).mean()
