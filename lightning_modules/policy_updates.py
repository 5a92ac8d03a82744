"""How one expert learns from one batch of its own samples: RLOO, PPO, or a pair objective (ERA, DPO).

Each update is a small config-named class around the pure losses of ``lightning_modules.losses``.
A *round* is one batch of samples drawn from the expert, scored by the expert's objective, with
its per-token log-probabilities under the sampling policy (``old``) and the frozen reference;
the update is applied for ``inner_steps`` optimiser steps on that round before a fresh one is
drawn (PPO's epochs; 1 for RLOO/ERA by default). A new update is one subclass named in YAML.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lightning_modules.losses import (
    group_normalised_advantages,
    kl_penalty,
    leave_one_out_advantages,
    nll_loss,
    ppo_clip_loss,
    reinforce_loss,
)
from datamodules.pairs import make_pairs
from lightning_modules.pair_losses import ERA, PairObjective


@dataclass
class Round:
    """One expert's batch: samples, their energies and log-probabilities when drawn."""

    input_ids: torch.Tensor  # [n, L]
    attention_mask: torch.Tensor  # [n, L]
    energies: torch.Tensor  # [n] float32, lower is better
    old_token_logps: torch.Tensor | None  # [n, L-1] under the expert that sampled them (None: not needed)
    ref_token_logps: torch.Tensor | None  # [n, L-1] under the frozen reference (None: not needed)
    texts: list[str]
    made_at_step: int
    old_logps: torch.Tensor | None = None  # [n] per-sequence sum, where the update needs no per-token values
    prepared: bool = False  # PolicyUpdate.prepare has cut it to what the loss reads

    @property
    def token_mask(self) -> torch.Tensor:
        return self.attention_mask[:, 1:]

    def to_state(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_state(cls, state: dict) -> "Round":
        return cls(**state)

    def rows(self, index: torch.Tensor) -> "Round":
        """The round restricted to ``index`` (1-D integer positions, in that order, or a bool mask)."""
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        if index.dtype not in (torch.int64, torch.int32) or index.dim() != 1:
            raise TypeError(f"Round.rows takes 1-D integer positions or a bool mask, got {index.dtype} {tuple(index.shape)}")
        cut = [int(i) for i in index]
        fields = {k: (v[index.to(v.device)] if isinstance(v, torch.Tensor) else v) for k, v in self.to_state().items()}
        fields["texts"] = [self.texts[i] for i in cut]
        return Round.from_state(fields)


class PolicyUpdate:
    """Maps the expert's current per-token log-probabilities on a round to a loss."""

    name = "update"
    inner_steps = 1
    # what the round must hold of the sampling expert's log-probabilities: "tokens" (per token, one
    # extra forward pass), "sequence" (per-sequence sums: the sampler's own, no extra pass) or None
    old_logps = "tokens"
    # who draws the rounds: "policy" (the expert being trained: on-policy) or "reference"
    sample_from = "policy"
    # whether the loss reads the reference's per-token log-probabilities (one forward pass per round)
    needs_reference = True

    def prepare(self, batch: Round) -> Round:
        """The round as the loss will read it, made once when the round is drawn (default: all of
        it). An update that learns from part of a round keeps only that part, so that neither the
        forward nor the backward pass runs on rows the loss ignores."""
        return batch

    def loss(self, token_logps: torch.Tensor, batch: Round) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


class RLOO(PolicyUpdate):
    """REINFORCE with a leave-one-out baseline; the KL to the reference is folded into the reward
    per sequence, r = −U − kl_coef · (log π_old(y) − log π_ref(y)), as in the RLOO paper.

    Args:
        kl_coef: weight of the KL term in the reward.
        group_size: samples per leave-one-out group (``None`` = the whole round).
    """

    name = "rloo"
    old_logps = "sequence"

    def __init__(self, kl_coef: float = 0.05, group_size: int | None = None):
        self.kl_coef, self.group_size = kl_coef, group_size

    def loss(self, token_logps, batch):
        mask = batch.token_mask.to(token_logps.dtype)
        old = (batch.old_logps if batch.old_logps is not None
               else (batch.old_token_logps * batch.token_mask).sum(-1))
        log_ratio = old.to(mask) - (batch.ref_token_logps.to(mask) * mask).sum(-1)
        rewards = -batch.energies.to(token_logps) - self.kl_coef * log_ratio.to(token_logps)
        advantages = leave_one_out_advantages(rewards, self.group_size)
        loss = reinforce_loss((token_logps * mask).sum(-1), advantages)
        return loss, {"kl": float(log_ratio.mean()), "reward": float(rewards.mean())}


class PPO(PolicyUpdate):
    """PPO's clipped surrogate with a group-normalised advantage (no value network) and a k3 KL
    penalty to the reference, for ``inner_steps`` optimiser steps per round (PPO epochs).

    Args:
        clip: ε of the ratio clip.
        kl_coef: weight of the KL(π‖π_ref) penalty.
        inner_steps: optimiser steps on each round before sampling again.
    """

    name = "ppo"

    def __init__(self, clip: float = 0.2, kl_coef: float = 0.05, inner_steps: int = 2):
        if inner_steps < 1:
            raise ValueError(f"inner_steps must be >= 1, got {inner_steps}")
        self.clip, self.kl_coef, self.inner_steps = clip, kl_coef, inner_steps

    def loss(self, token_logps, batch):
        mask = batch.token_mask
        advantages = group_normalised_advantages(-batch.energies.to(token_logps))
        surrogate = ppo_clip_loss(token_logps, batch.old_token_logps.to(token_logps), advantages, mask, self.clip)
        kl = kl_penalty(token_logps, batch.ref_token_logps.to(token_logps), mask)
        return surrogate + self.kl_coef * kl, {"kl": float(kl.detach()), "reward": float(-batch.energies.mean())}


class PairUpdate(PolicyUpdate):
    """A pair objective (``pair_losses``: ERA, DPO, …) on the round's samples: pairs of distinct
    samples, sequence log-probabilities under the expert and the reference, the round's energies.

    Args:
        objective: the pair objective, the same class offline alignment trains with.
        max_pairs: distinct pairs drawn per round (``None`` = all n(n−1)/2).
        seed: pairs are drawn with seed + the step the round was made at.
    """

    name = "pairs"
    old_logps = None

    def __init__(self, objective: PairObjective, max_pairs: int | None = 2048, seed: int = 0):
        self.objective, self.max_pairs, self.seed = objective, max_pairs, seed
        self.name = objective.name

    def loss(self, token_logps, batch):
        mask = batch.token_mask.to(token_logps.dtype)
        logps = (token_logps * mask).sum(-1)
        ref = (batch.ref_token_logps.to(token_logps) * mask).sum(-1)
        i, j = make_pairs(batch.texts, self.max_pairs, self.seed + batch.made_at_step)
        if len(i) == 0:  # every sample identical: no preference to learn, keep the graph
            return logps.sum() * 0.0, {"pairs": 0.0}
        i, j = torch.from_numpy(i).to(logps.device), torch.from_numpy(j).to(logps.device)
        u = batch.energies.to(logps)
        loss = self.objective(logps[i], logps[j], ref[i], ref[j], u[i], u[j])
        return loss, {"pairs": float(len(i)), "reward": float(-batch.energies.mean())}


class ERAUpdate(PairUpdate):
    """Online Energy Rank Alignment as an expert update: :class:`PairUpdate` with
    ``pair_losses.ERA`` (the arguments are ERA's, see there, and PairUpdate's)."""

    def __init__(self, beta: float = 10.0, gamma: float = 0.0, max_pairs: int | None = 2048, seed: int = 0,
                 reverse_kl: bool = False, max_shift: float | None = None):
        super().__init__(ERA(beta, gamma, reverse_kl, max_shift), max_pairs, seed)
        self.beta, self.gamma = beta, gamma


class SupervisedTopK(PolicyUpdate):
    """The supervised baseline of the Iterative RS paper: fine-tune on the frozen reference's own
    best samples. Each round is drawn from the reference (not the expert) and scored; the loss is
    the negative log-likelihood of the ``fraction`` of it with the lowest energy (ties: the
    earlier sample). With a ``scalarization`` (one policy) the energy is the weighted sum.

    Args:
        fraction: share of each round kept as fine-tuning targets (at least one sample); the
            rest is dropped when the round is drawn (:meth:`prepare`), so the update's forward and
            backward passes run on the targets only, and no reference pass is made.
    """

    name = "supervised"
    old_logps = None
    sample_from = "reference"
    needs_reference = False

    def __init__(self, fraction: float = 0.25):
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction

    def prepare(self, batch: Round) -> Round:
        """Only the targets: the ``fraction`` of the round with the lowest energy (once)."""
        if batch.prepared:
            return batch
        keep = max(1, round(self.fraction * len(batch.energies)))
        targets = batch.rows(torch.argsort(batch.energies, stable=True)[:keep])
        targets.prepared = True
        return targets

    def loss(self, token_logps, batch):
        """NLL of every row of a prepared round (the targets)."""
        if not batch.prepared:  # e.g. a round restored from a checkpoint of older code: all of it
            raise ValueError("SupervisedTopK.loss needs a round cut to its targets by prepare(); this one is whole")
        mask = batch.token_mask.to(token_logps.dtype)
        loss = nll_loss((token_logps * mask).sum(-1))
        return loss, {"reward": float(-batch.energies.mean()), "kept": float(len(batch.energies))}
