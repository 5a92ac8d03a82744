"""Any Therapeutics Data Commons oracle through PyTDC, when it is installed.

PyTDC is an optional extra (``pip install 'rewardfit[tdc]'``): it pins old RDKit/transformers
versions and does not import next to current RDKit, so use it in a separate environment. For JNK3
and GSK3β prefer :mod:`oracles.tdc_forest`, which reproduces TDC's values exactly without PyTDC.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from oracles.base import Oracle, Scores, _check_batch
from oracles.canonical import canonical_smiles
from oracles.transforms import Negate, Transform


class TDCOracle(Oracle):
    """Wraps ``tdc.Oracle(name=...)``; raw value = TDC's score (higher is better), U = −score."""

    def __init__(self, name: str, transform: Transform | None = None, penalty: float = 0.0):
        super().__init__(transform or Negate(), penalty, name=name.lower())
        try:
            import tdc
        except Exception as err:  # ImportError, or PyTDC failing to import beside current RDKit
            raise ImportError(
                f"TDCOracle({name!r}) needs PyTDC: pip install 'rewardfit[tdc]' (it pins old RDKit; use a "
                f"separate environment). For JNK3/GSK3B use oracles.tdc_forest.JNK3/GSK3B instead. ({err})"
            ) from err
        self.tdc_name = name
        self._oracle = tdc.Oracle(name=name)

    def __call__(self, sequences: Sequence[str]) -> Scores:
        batch = _check_batch(sequences)
        canonical = [canonical_smiles(s) if isinstance(s, str) else None for s in batch]
        valid_idx = [i for i, c in enumerate(canonical) if c is not None]
        values = np.full(len(batch), np.nan)
        if valid_idx:
            scored = self._oracle([canonical[i] for i in valid_idx])
            values[valid_idx] = np.asarray(scored, dtype=np.float64).reshape(-1)
        return self.scores_from_values(values, canonical)
