"""Checkpoint and requeue when the cluster is about to preempt the job.

SLURM sends ``SIGUSR1`` some seconds before the time limit or a preemption (the sbatch script
asks for ``--signal=SIGUSR1@90``). Lightning's own handler saves the checkpoint *inside* the
signal handler, i.e. at whatever point of the step the signal lands, and each DDP rank acts on
its own signal. This callback only sets a flag in the handler; at the end of the next training
batch the ranks agree (any rank signalled → all act), save ``hpc_ckpt_<n>.ckpt`` into the
trainer's ``default_root_dir`` atomically (temporary file, then rename), rank 0 calls
``scontrol requeue $SLURM_JOB_ID``, and training stops cleanly. When the requeued job starts
with no ``ckpt_path``, Lightning resumes from the newest ``hpc_ckpt_*`` automatically
(``ckpt_path="last"`` would *not* pick it up, so the rendered sbatch script passes none).

``drill_at_step`` raises the signal once at that step: a fire drill to check the whole cycle on
your cluster (and what the tests use).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from pathlib import Path

import lightning as L

log = logging.getLogger(__name__)


class RequeueOnPreemption(L.Callback):
    """Save an HPC checkpoint and requeue the SLURM job on ``signum`` (default ``SIGUSR1``).

    Args:
        signum: the signal SLURM is asked to send (``--signal=SIGUSR1@90``).
        requeue: call ``scontrol requeue`` (off: only checkpoint and stop).
        drill_at_step: raise the signal once when this global step ends (a preemption drill).
    """

    def __init__(self, signum: int = int(signal.SIGUSR1), requeue: bool = True, drill_at_step: int | None = None):
        self.signum, self.requeue, self.drill_at_step = int(signum), requeue, drill_at_step
        self.signalled = False
        self.saved_path: str | None = None

    def _handler(self, signum, frame) -> None:
        self.signalled = True  # act at the end of the batch, in a consistent state

    def setup(self, trainer, pl_module, stage: str) -> None:
        # registered before Lightning's signal connector, which then leaves SIGUSR1 to us
        import threading

        if threading.current_thread() is threading.main_thread():
            signal.signal(self.signum, self._handler)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.drill_at_step is not None and trainer.global_step == self.drill_at_step and not self.signalled:
            os.kill(os.getpid(), self.signum)
        if not trainer.strategy.reduce_boolean_decision(self.signalled, all=False):
            return
        final = trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)
        tmp = str(Path(final).with_name(f".tmp-{Path(final).name}"))
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, final)
            log.info("preemption: checkpoint at step %d saved to %s", trainer.global_step, final)
            if self.requeue:
                self._requeue()
        self.saved_path = final
        self.signalled = False
        trainer.should_stop = True
        # Stopping ends training, and ModelCheckpoint would then write last.ckpt *after* the HPC
        # checkpoint captured its state; the resumed run would take that file for a foreign one,
        # write last-v1.ckpt and leave a stale last.ckpt behind. This process is about to end, so
        # its checkpoint callbacks stop writing "last" files.
        for callback in trainer.checkpoint_callbacks:
            if hasattr(callback, "save_last"):
                callback.save_last = False

    @staticmethod
    def _requeue() -> None:
        array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        job = f"{array_job}_{task}" if array_job and task else os.environ.get("SLURM_JOB_ID")
        if not job or not re.fullmatch(r"[0-9_]+", job):
            log.warning("preemption: no SLURM job id in the environment; not requeued")
            return
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        if result.returncode:
            log.warning("preemption: scontrol requeue %s failed (%d): %s", job, result.returncode, result.stderr)
        else:
            log.info("preemption: job %s requeued", job)
