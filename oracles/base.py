"""The oracle interface: a batch of sequences in, a batch of energies (lower is better) out.

Every oracle returns :class:`Scores`: float64 energies, a validity mask, and the raw property
values. Invalid inputs (unparsable SMILES, empty strings, ``None``, properties that come out NaN)
never raise and never produce NaN: they get the oracle's ``penalty`` energy and ``valid=False``.
A caller error (not a list of sequences) raises.

:class:`MoleculeOracle` holds the machinery molecular oracles share: canonicalise each SMILES,
score each distinct canonical molecule once per batch, and keep an LRU cache of raw values keyed
by canonical SMILES (the oracle's configuration is fixed per instance, so the cache key needs
nothing else). Subclasses implement only ``compute(mol) -> float``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from oracles.canonical import canonical_smiles
from oracles.transforms import Identity, Transform

MAX_SMILES_LENGTH = 2000  # longer strings are treated as invalid without parsing


@dataclass
class Scores:
    """What an oracle says about a batch."""

    energies: torch.Tensor  # [n] or [n, k] float64, lower is better; penalty where invalid
    valid: torch.Tensor  # [n] bool
    values: dict[str, np.ndarray] = field(default_factory=dict)  # raw properties, NaN where invalid
    canonical: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return self.valid.numel()


def _check_batch(sequences) -> list:
    if isinstance(sequences, str) or not isinstance(sequences, Sequence):
        raise TypeError(f"an oracle scores a list of sequences, got {type(sequences).__name__}")
    return list(sequences)


class Oracle:
    """Base class. ``name`` labels logs and files; ``penalty`` is the energy of invalid inputs."""

    name: str = "oracle"

    def __init__(self, transform: Transform | None = None, penalty: float = 10.0, name: str | None = None):
        if not math.isfinite(penalty):
            raise ValueError(f"penalty energy must be finite, got {penalty}")
        self.transform = transform or Identity()
        self.penalty = float(penalty)
        if name:
            self.name = name

    def __call__(self, sequences: Sequence[str]) -> Scores:
        raise NotImplementedError


class MoleculeOracle(Oracle):
    """A property of a molecule computed with RDKit, turned into an energy by ``transform``."""

    def __init__(self, transform: Transform | None = None, penalty: float = 10.0, name: str | None = None,
                 cache_size: int = 100_000):
        super().__init__(transform, penalty, name)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, float] = OrderedDict()

    def compute(self, mol) -> float:
        raise NotImplementedError

    def __getstate__(self) -> dict:  # picklable for DataLoader workers / process pools; no cache
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()
        return state

    def raw_values(self, canonical: Sequence[str | None]) -> np.ndarray:
        """Raw property per canonical SMILES (NaN where invalid), each distinct molecule once."""
        from rdkit import Chem

        out = np.full(len(canonical), np.nan)
        todo: dict[str, list[int]] = {}
        for index, smiles in enumerate(canonical):
            if smiles is None:
                continue
            if smiles in self._cache:
                self._cache.move_to_end(smiles)
                out[index] = self._cache[smiles]
            else:
                todo.setdefault(smiles, []).append(index)
        for smiles, indices in todo.items():
            try:
                value = float(self.compute(Chem.MolFromSmiles(smiles)))
            except Exception:  # an RDKit failure on one molecule is that molecule's problem
                value = float("nan")
            out[indices] = value
            self._cache[smiles] = value
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return out

    def __call__(self, sequences: Sequence[str]) -> Scores:
        batch = _check_batch(sequences)
        canonical = [canonical_smiles(s) if isinstance(s, str) and len(s) <= MAX_SMILES_LENGTH else None
                     for s in batch]
        values = self.raw_values(canonical)
        energies = self.transform(values)
        valid = np.isfinite(values) & np.isfinite(energies)
        energies = np.where(valid, energies, self.penalty)
        return Scores(torch.from_numpy(energies.astype(np.float64)), torch.from_numpy(valid),
                      {self.name: values}, canonical)
