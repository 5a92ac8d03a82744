"""Training batches that a resumed run continues exactly where the interrupted one stopped.

A plain ``DataLoader(shuffle=True, generator=...)`` cannot be resumed: a resumed run builds a new
loader whose generator starts again from its seed, so it draws epoch 0's order whatever the epoch,
and it starts from the first batch of the epoch although the interrupted run had trained on some
of them (Lightning only warns). :class:`ResumableBatches` makes batch ``b`` of epoch ``e`` a pure
function ``make(e, b)`` and records the position (epoch, batches done) through Lightning's
stateful-loader interface (``state_dict``/``load_state_dict``, stored under ``loops`` in the
checkpoint), so the resumed run skips exactly the batches already trained on.

The position is read from the trainer's progress counters, not counted here: Lightning fetches a
batch ahead, so a loader's own count would be one too far at checkpoint time.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class ResumableBatches:
    """``length`` batches per epoch, batch ``b`` of epoch ``e`` = ``make(e, b)``.

    Args:
        length: batches per epoch (the same on every DDP rank).
        make: ``(epoch, batch) -> batch``; must depend on nothing else.
        progress: ``() -> (epoch, batches done in it)``, read from the trainer at checkpoint time
            and for the epoch of a fresh iteration.
    """

    def __init__(self, length: int, make: Callable[[int, int], object],
                 progress: Callable[[], tuple[int, int]]):
        self.length, self.make, self.progress = int(length), make, progress
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        if self._resume is not None:
            (epoch, start), self._resume = self._resume, None
        else:
            epoch, start = self.progress()[0], 0
        for b in range(start, self.length):
            yield self.make(epoch, b)

    def state_dict(self) -> dict:
        epoch, done = self.progress()
        if done >= self.length:  # the epoch is complete: resume at the start of the next one
            epoch, done = epoch + 1, 0
        return {"epoch": int(epoch), "batches_done": int(done), "length": self.length}

    def load_state_dict(self, state: dict) -> None:
        if state.get("length", self.length) != self.length:
            raise ValueError(f"the checkpoint was taken with {state['length']} batches per epoch, this run has "
                             f"{self.length}: the pair set or batch size changed, so the run cannot resume exactly")
        self._resume = (int(state["epoch"]), int(state["batches_done"]))


def trainer_progress(module) -> Callable[[], tuple[int, int]]:
    """The ``progress`` callable for a LightningModule: its current epoch and batches processed."""
    def progress() -> tuple[int, int]:
        trainer = module.trainer
        return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed
    return progress


class ShuffledPairBatches:
    """Batch ``b`` of epoch ``e`` of pairs (i, j): a permutation seeded by ``(seed, e)``, padded by
    wrapping to a multiple of the world size and dealt to DDP ranks (as ``DistributedSampler``
    does), then cut into batches. The permutation of the current epoch is cached."""

    def __init__(self, i: torch.Tensor, j: torch.Tensor, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.i, self.j, self.batch_size, self.seed, self.rank, self.world = i, j, batch_size, seed, rank, world
        self.per_rank = -(-len(i) // world)
        self._epoch, self._rows = None, None

    def __len__(self) -> int:
        return -(-self.per_rank // self.batch_size)

    def rows(self, epoch: int) -> torch.Tensor:
        if self._epoch != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(len(self.i), generator=generator)
            order = order.repeat(-(-self.per_rank * self.world // len(order)))[: self.per_rank * self.world]
            self._epoch, self._rows = epoch, order[self.rank::self.world]
        return self._rows

    def __call__(self, epoch: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.rows(epoch)[b * self.batch_size:(b + 1) * self.batch_size]
        return self.i[rows], self.j[rows]
