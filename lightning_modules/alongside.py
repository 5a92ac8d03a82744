"""Run an oracle call in a background thread while the networks run in this one."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

S = TypeVar("S")
T = TypeVar("T")


def alongside(device: torch.device, score: Callable[[], S], work: Callable[[], T]) -> tuple[S, T]:
    """``score()`` in a background thread (grad off, ``device`` current there) while ``work()`` runs
    in this one; both results, the same as if run one after the other. The oracle's error is
    re-raised here, after ``work()`` has finished (why: docs/design.md)."""

    def background():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        with torch.no_grad():  # grad mode is per thread; learned oracles run a network too
            return score()

    with ThreadPoolExecutor(1, thread_name_prefix="rewardfit-oracle") as pool:
        scoring = pool.submit(background)
        try:
            done = work()
        finally:
            scores = scoring.result()  # waits, and re-raises the oracle's error here
    return scores, done
