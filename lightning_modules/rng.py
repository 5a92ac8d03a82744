"""Random-number-generator state in checkpoints, so a resumed run draws the same dropout masks
(and anything else from the global generators) as an uninterrupted one.

Lightning checkpoints do not carry the global RNG states; without them, a model with dropout
resumed at step k diverges from the uninterrupted run at step k + 1. Each DDP rank stores and
restores its own state (rank-specific seeds stay rank-specific).
"""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    # plain types and tensors only, so checkpoints stay loadable with torch.load(weights_only=True)
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict | None) -> None:
    """Restore what :func:`rng_state` saved; a checkpoint without it (older runs) changes nothing."""
    if not state:
        return
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
