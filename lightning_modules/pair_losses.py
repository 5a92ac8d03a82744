"""Pairwise alignment objectives as small config-named classes around the pure losses.

A new objective is one subclass of :class:`PairObjective` named by ``class_path`` in YAML.
"""

from __future__ import annotations

import torch

from lightning_modules.losses import dpo_loss, era_loss


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
