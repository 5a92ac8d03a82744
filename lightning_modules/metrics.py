"""Sample-quality metrics as torchmetrics ``Metric``s, synchronised across DDP ranks.

Strings cannot be all-gathered, so uniqueness keeps a 64-bit hash of each valid canonical form
(collisions among a few million samples have probability ~1e-7).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torchmetrics import Metric

from oracles.canonical import canonicaliser


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


class Validity(Metric):
    """Fraction of samples whose canonical form exists (RDKit parses the SMILES, DNA is ACGT…)."""

    full_state_update = False

    def __init__(self, domain: str = "smiles", **kwargs):
        super().__init__(**kwargs)
        self.canon = canonicaliser(domain)
        self.add_state("valid", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, samples: Sequence[str]) -> None:
        self.valid += sum(self.canon(s) is not None for s in samples)
        self.total += len(samples)

    def compute(self) -> torch.Tensor:
        return self.valid.float() / self.total.clamp(min=1)


class Uniqueness(Metric):
    """Distinct canonical forms among the valid samples, divided by the number of valid samples."""

    full_state_update = False

    def __init__(self, domain: str = "smiles", **kwargs):
        super().__init__(**kwargs)
        self.canon = canonicaliser(domain)
        self.add_state("hashes", [], dist_reduce_fx="cat")

    def update(self, samples: Sequence[str]) -> None:
        canon = [c for c in map(self.canon, samples) if c is not None]
        self.hashes.append(torch.tensor([_hash64(c) for c in canon], dtype=torch.long, device=self.device))

    def compute(self) -> torch.Tensor:
        hashes = self.hashes if isinstance(self.hashes, torch.Tensor) else (
            torch.cat(self.hashes) if self.hashes else torch.zeros(0, dtype=torch.long))
        if hashes.numel() == 0:
            return torch.tensor(0.0)
        return torch.unique(hashes).numel() / torch.tensor(float(hashes.numel()))
