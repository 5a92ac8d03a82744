"""Which samples are compared: pairs for preference-style losses (ERA, DPO).

From n scored samples there are n(n−1)/2 unordered pairs; we use all of them or a seeded random
subset of K distinct ones, drawn without building the full list. Two samples with the same
sequence are never paired (their log-ratio is zero and they carry no information). The public
ERA code used only n of the available pairs and failed for n = 2; these functions are tested
for counts, distinctness and n = 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def n_pairs(n: int) -> int:
    return n * (n - 1) // 2


def pair_from_linear(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Map linear indices 0 … n(n−1)/2 − 1 to pairs (i, j), i < j, in row-major order."""
    k = np.asarray(k, dtype=np.int64)
    row_starts = np.concatenate([[0], np.cumsum(np.arange(n - 1, 0, -1, dtype=np.int64))])
    i = np.searchsorted(row_starts, k, side="right") - 1
    return i, k - row_starts[i] + i + 1


def all_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """All n(n−1)/2 unordered pairs (i < j)."""
    i, j = np.triu_indices(n, k=1)
    return i.astype(np.int64), j.astype(np.int64)


def sample_pairs(n: int, k: int, seed: int | np.random.Generator = 0) -> tuple[np.ndarray, np.ndarray]:
    """``k`` distinct unordered pairs drawn uniformly without replacement (seeded)."""
    total = n_pairs(n)
    if k >= total:
        return all_pairs(n)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    linear = np.sort(rng.choice(total, size=k, replace=False))
    return pair_from_linear(linear, n)


def make_pairs(sequences: Sequence[str] | int, max_pairs: int | None = None,
               seed: int | np.random.Generator = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pairs over distinct sequences: all of them, or ``max_pairs`` drawn at random.

    With a list of sequences, duplicates are collapsed first (the first occurrence represents
    each distinct sequence), so no sequence is ever paired with itself. Returned indices point
    into the original list.
    """
    if isinstance(sequences, int):
        representatives = np.arange(sequences)
    else:
        first: dict[str, int] = {}
        for index, seq in enumerate(sequences):
            first.setdefault(seq, index)
        representatives = np.fromiter(first.values(), dtype=np.int64, count=len(first))
    m = len(representatives)
    if m < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    i, j = all_pairs(m) if max_pairs is None else sample_pairs(m, max_pairs, seed)
    return representatives[i], representatives[j]
