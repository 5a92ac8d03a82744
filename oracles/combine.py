"""Several oracles at once: a weighted sum (multi-property ERA, MORLHF) or an energy vector
(one energy per objective, for multi-objective methods)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from oracles.base import Oracle, Scores, _check_batch


def _score_all(oracles: list[Oracle], sequences) -> list[Scores]:
    batch = _check_batch(sequences)
    return [oracle(batch) for oracle in oracles]


class WeightedSum(Oracle):
    """U = Σ wᵢ Uᵢ; a sample is valid only when every component is (else the sum of penalties)."""

    name = "weighted_sum"

    def __init__(self, oracles: list[Oracle], weights: list[float] | None = None, name: str | None = None):
        weights = [1.0] * len(oracles) if weights is None else list(weights)
        if len(weights) != len(oracles) or not oracles:
            raise ValueError(f"{len(oracles)} oracles but {len(weights)} weights")
        super().__init__(penalty=sum(w * o.penalty for w, o in zip(weights, oracles)), name=name)
        self.oracles, self.weights = list(oracles), weights

    def __call__(self, sequences: Sequence[str]) -> Scores:
        parts = _score_all(self.oracles, sequences)
        valid = torch.stack([p.valid for p in parts]).all(0)
        energy = sum(w * p.energies for w, p in zip(self.weights, parts))
        energy = torch.where(valid, energy, torch.full_like(energy, self.penalty))
        values = {k: v for p in parts for k, v in p.values.items()}
        return Scores(energy, valid, values, parts[0].canonical)


class EnergyVector(Oracle):
    """Energies [n, k], one column per oracle; valid where every component is valid."""

    name = "energy_vector"

    def __init__(self, oracles: list[Oracle], name: str | None = None):
        if not oracles:
            raise ValueError("EnergyVector needs at least one oracle")
        super().__init__(name=name)
        self.oracles = list(oracles)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.oracles]

    def __call__(self, sequences: Sequence[str]) -> Scores:
        parts = _score_all(self.oracles, sequences)
        valid = torch.stack([p.valid for p in parts]).all(0)
        energies = torch.stack([p.energies for p in parts], dim=1)
        values = {k: v for p in parts for k, v in p.values.items()}
        return Scores(energies, valid, values, parts[0].canonical)
