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


def _check_finite(name: str, tensor: torch.Tensor) -> None:
    if not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).sum().item()
        raise ValueError(f"{name} has {bad} non-finite value(s); map invalid samples to a penalty "
                         "energy in the oracle instead of training on NaN/inf")


def era_logits(pi_logps_1, pi_logps_2, ref_logps_1, ref_logps_2, energies_1, energies_2,
               beta: float, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy logit ℓ_π and the target logit ℓ* of ERA (see the module docstring)."""
    if beta < 0 or gamma < 0:
        raise ValueError(f"beta and gamma must be >= 0, got beta={beta}, gamma={gamma}")
    _check_finite("energies_1", energies_1)
    _check_finite("energies_2", energies_2)
    beta_p, gamma_p = beta / (1 + gamma), gamma / (1 + gamma)
    policy = pi_logps_2 - pi_logps_1
    target = -beta_p * (energies_2 - energies_1) + gamma_p * (ref_logps_2 - ref_logps_1)
    return policy, target.detach()


def bernoulli_kl(logit_p: torch.Tensor, logit_q: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(σ(logit_p)) ‖ Bernoulli(σ(logit_q))), elementwise, computed in log space."""
    p = torch.sigmoid(logit_p)
    return (p * (F.logsigmoid(logit_p) - F.logsigmoid(logit_q))
            + (1 - p) * (F.logsigmoid(-logit_p) - F.logsigmoid(-logit_q)))


def era_loss(pi_logps_1: torch.Tensor, pi_logps_2: torch.Tensor, ref_logps_1: torch.Tensor,
             ref_logps_2: torch.Tensor, energies_1: torch.Tensor, energies_2: torch.Tensor,
             beta: float = 1.0, gamma: float = 0.0, reverse_kl: bool = False) -> torch.Tensor:
    """Mean ERA loss over pairs: KL(σ(ℓ*) ‖ σ(ℓ_π)), or KL(σ(ℓ_π) ‖ σ(ℓ*)) with ``reverse_kl``."""
    policy, target = era_logits(pi_logps_1, pi_logps_2, ref_logps_1, ref_logps_2, energies_1,
                                energies_2, beta, gamma)
    kl = bernoulli_kl(policy, target) if reverse_kl else bernoulli_kl(target, policy)
    return kl.mean()


def dpo_loss(pi_logps_1: torch.Tensor, pi_logps_2: torch.Tensor, ref_logps_1: torch.Tensor,
             ref_logps_2: torch.Tensor, energies_1: torch.Tensor, energies_2: torch.Tensor,
             beta: float = 0.1) -> torch.Tensor:
    """Mean DPO loss with the lower-energy member of each pair preferred; ties are skipped."""
    _check_finite("energies_1", energies_1)
    _check_finite("energies_2", energies_2)
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
