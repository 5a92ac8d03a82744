"""The term for invalid samples in alignment: out of the objective's pairs, DPO on (valid, invalid) pairs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from lightning_modules.losses import dpo_loss


class InvalidTerm:
    """Invalid samples leave the pair objective's pairs and get a term of their own: each step,
    ``weight`` × DPO (β = ``beta``) on random (valid, invalid) pairs of stored samples (why:
    docs/design.md).

    Args:
        weight: the term's weight (> 0).
        beta: DPO β of the term.
    """

    def __init__(self, weight: float = 1.0, beta: float = 0.5):
        if not weight > 0:
            raise ValueError(f"InvalidTerm weight must be > 0, got {weight}")
        self.weight, self.beta = weight, beta

    @staticmethod
    def pairable(valid: np.ndarray) -> np.ndarray:
        """The rows the pair objective may pair: the valid ones."""
        return np.flatnonzero(valid)

    def loss(self, logprob: Callable[[torch.Tensor], torch.Tensor], ref_logps: torch.Tensor, good: torch.Tensor,
             bad: torch.Tensor, n: int, generators: tuple[torch.Generator, torch.Generator]) -> torch.Tensor:
        """Unweighted DPO on ``n`` pairs of rows drawn from ``good`` and ``bad`` (one generator each);
        ``logprob(rows)`` gives the policy's log-probabilities of stored rows."""
        g = good[torch.randint(len(good), (n,), generator=generators[0])]
        b = bad[torch.randint(len(bad), (n,), generator=generators[1])]
        pi_good, pi_bad = logprob(torch.cat([g, b])).split(n)
        ref = ref_logps.to(pi_good.device)
        zero = torch.zeros(n, device=pi_good.device)
        # energies 0 (valid) and 1 (invalid) only say which member DPO prefers
        return dpo_loss(pi_bad, pi_good, ref[b], ref[g], zero + 1, zero, self.beta)
