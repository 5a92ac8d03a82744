"""Pairwise alignment objectives as small config-named classes around the pure losses.

A new objective is one subclass of :class:`PairObjective` named by ``class_path`` in YAML. The same
objective trains offline/online alignment and directed evolution on pairs, and an expert in
IRS/RS/MORLHF (``policy_updates.PairUpdate``); terms compose as wrappers (:class:`WithSFT`).
"""

from __future__ import annotations

import torch

from lightning_modules.losses import dpo_loss, era_loss, nll_loss


class PairObjective:
    """Maps per-pair policy/reference log-probs and energies to a scalar loss."""

    name = "pair"

    def __call__(self, pi_1, pi_2, ref_1, ref_2, u_1, u_2) -> torch.Tensor:
        raise NotImplementedError


class ERA(PairObjective):
    """Energy Rank Alignment: target preference σ(−β'ΔU + γ'Δ log π_ref) (see ``losses.era_loss``).

    Args:
        beta: inverse temperature on the energy; larger β → lower mean energy.
        gamma: strength of the reference prior; larger γ → closer to π_ref.
        reverse_kl: KL(policy ‖ target) instead of KL(target ‖ policy).
        max_shift: optional bound, in nats, on how far a pair's target odds may move from the
            reference's odds (a per-pair trust region for weak references; ``None``, the
            default, is the exact ERA target).
    """

    name = "era"

    def __init__(self, beta: float = 10.0, gamma: float = 0.0, reverse_kl: bool = False,
                 max_shift: float | None = None):
        self.beta, self.gamma, self.reverse_kl, self.max_shift = beta, gamma, reverse_kl, max_shift

    def __call__(self, pi_1, pi_2, ref_1, ref_2, u_1, u_2):
        return era_loss(pi_1, pi_2, ref_1, ref_2, u_1, u_2, self.beta, self.gamma, self.reverse_kl,
                        self.max_shift)


class DPO(PairObjective):
    """Direct Preference Optimisation with the lower-energy sample preferred."""

    name = "dpo"

    def __init__(self, beta: float = 0.1):
        self.beta = beta

    def __call__(self, pi_1, pi_2, ref_1, ref_2, u_1, u_2):
        return dpo_loss(pi_1, pi_2, ref_1, ref_2, u_1, u_2, self.beta)


class WithSFT(PairObjective):
    """An objective plus ``weight`` × the negative log-likelihood of the lower-energy member of
    each pair (an SFT term that keeps samples on-manifold).

    Args:
        objective: the pair objective it adds to.
        weight: weight of the NLL term.
    """

    def __init__(self, objective: PairObjective, weight: float = 0.1):
        self.objective, self.weight = objective, weight
        self.name = f"{objective.name}+sft"

    def __call__(self, pi_1, pi_2, ref_1, ref_2, u_1, u_2):
        loss = self.objective(pi_1, pi_2, ref_1, ref_2, u_1, u_2)
        return loss + self.weight * nll_loss(torch.where(u_1 <= u_2, pi_1, pi_2))
