"""A callback that stops a run mid-schedule, as a pre-emption would: the trainer still plans its
full ``max_steps`` (and learning-rate schedule), so a resumed run must continue, not restart."""

import lightning as L


class Interrupt(L.Callback):
    def __init__(self, at: int):
        self.at = at

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step >= self.at:
            trainer.should_stop = True
