"""Iterative Rewarded Soups' merge step as a callback on a ``MultiObjectiveModule``.

Every ``every_n_steps`` optimiser steps: all experts are replaced by their weighted average
ρ = Σ wᵢ θᵢ (parameters and floating buffers, in place), the optimiser state is reset (as the
reference code does by re-creating its trainer) or kept, and M of the N experts are drawn
uniformly at random, with the callback's own seeded generator, to train until the next merge.

Merge weights are ``uniform``, ``given`` (a fixed list) or ``selected``: each candidate in
``candidates`` is merged, sampled and scored, and the one whose samples have the highest mean
reward (−mean energy over all objectives) wins — the MPRA variant of the paper.

Everything that decides a merge (last merge step, generator state, current subset, last weights)
is in ``state_dict``, so a resumed run merges at the same steps with the same subsets. Under DDP
the subset and the weights are broadcast from rank 0, so every rank merges identically.
Lightning's ``WeightAveraging`` averages one model over time; this averages N models in space.
"""

from __future__ import annotations

import logging

import lightning as L
import numpy as np
import torch

log = logging.getLogger(__name__)


class WeightMergingCallback(L.Callback):
    """Merge the experts every ``every_n_steps`` steps and choose the next M of N.

    Args:
        every_n_steps: m, the merge period in optimiser steps (the paper: 4).
        num_active: M, how many experts train between merges (``None`` = all N).
        weights: ``None`` for uniform, or N fixed merge weights.
        candidates: candidate weight vectors for the ``selected`` mode (overrides ``weights``).
        selection_samples: samples per candidate in the selected mode.
        reset_optimizer: clear Adam's moments after each merge (the reference code's behaviour).
        seed: seed of the subset generator; ``None`` takes the module's ``seed`` when training
            starts, so one ``--model.init_args.seed`` varies the whole run.
    """

    def __init__(self, every_n_steps: int = 4, num_active: int | None = None, weights: list[float] | None = None,
                 candidates: list[list[float]] | None = None, selection_samples: int = 64,
                 reset_optimizer: bool = True, seed: int | None = 0):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.num_active = num_active
        self.weights = weights
        self.candidates = candidates
        self.selection_samples = selection_samples
        self.reset_optimizer = reset_optimizer
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed or 0)
        self.last_merge_step = 0
        self.merges = 0
        self.subset: list[int] | None = None
        self.last_weights: list[float] | None = None

    # ------------------------------------------------------------------ choices
    def draw_subset(self, num_experts: int) -> list[int]:
        """M of N experts, uniformly among the C(N, M) subsets (a seeded permutation's prefix)."""
        m = num_experts if self.num_active is None else self.num_active
        if not 1 <= m <= num_experts:
            raise ValueError(f"num_active must be in 1..{num_experts}, got {m}")
        return sorted(torch.randperm(num_experts, generator=self.generator)[:m].tolist())

    def merge_weights(self, module) -> list[float]:
        n = module.num_experts
        if self.candidates:
            best, best_reward = None, -np.inf
            for k, candidate in enumerate(self.candidates):
                stats = module.evaluate(candidate, n=self.selection_samples, seed=self.merges * 1000 + k)
                module.oracle_calls += self.selection_samples  # the selection scores samples: budget
                reward = -np.mean([stats[f"energy/{name}"] for name in module.names])
                if reward > best_reward:
                    best, best_reward = list(candidate), reward
            return best
        return [1.0 / n] * n if self.weights is None else list(self.weights)

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer, pl_module) -> None:
        if self.weights is not None and len(self.weights) != pl_module.num_experts:
            raise ValueError(f"{len(self.weights)} merge weights for {pl_module.num_experts} experts")
        if self.subset is None:  # a fresh run (a resumed one restored its generator and subset)
            if self.seed is None:
                self.generator.manual_seed(int(pl_module.hparams.seed))
            self.subset = trainer.strategy.broadcast(self.draw_subset(pl_module.num_experts), src=0)
        pl_module.active = list(self.subset)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps or step == self.last_merge_step:
            return  # also skips the extra micro-batches of gradient accumulation
        weights = trainer.strategy.broadcast(self.merge_weights(pl_module), src=0)
        pl_module.merge_experts(weights)
        if self.reset_optimizer:
            for optimizer in trainer.optimizers:
                optimizer.state.clear()
        self.subset = trainer.strategy.broadcast(self.draw_subset(pl_module.num_experts), src=0)
        pl_module.active = list(self.subset)
        self.last_merge_step, self.last_weights = step, list(weights)
        self.merges += 1
        pl_module.log("merge/count", float(self.merges), batch_size=1)

    # ------------------------------------------------------------------ resumption
    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "last_merge_step": self.last_merge_step,
                "merges": self.merges, "subset": self.subset, "last_weights": self.last_weights}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.last_merge_step = state["last_merge_step"]
        self.merges = state["merges"]
        self.subset = state["subset"]
        self.last_weights = state["last_weights"]
