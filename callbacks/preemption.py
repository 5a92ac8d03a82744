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

:class:`CheckpointOnSigterm` (``main.py`` adds it to every run) handles ``SIGTERM``, which a
scheduler, a wrapper or ``kill`` sends to stop a job: Lightning alone stops and exits with status
0, so whatever started the run records it as finished. Here, as for SIGUSR1, the end of the
current batch saves ``last.ckpt`` (in the ModelCheckpoint's folder, else
``<default_root_dir>/checkpoints/``), training stops and the process exits with 143 (128 +
SIGTERM), the status a shell gives a process killed by SIGTERM. Resume with ``--ckpt_path`` that
file. In a SLURM job (with :class:`RequeueOnPreemption`) the checkpoint is an ``hpc_ckpt_<n>.ckpt``
instead, so that a job SLURM requeues after a SIGTERM resumes from it as after SIGUSR1; a SIGTERM
after a preemption checkpoint (SLURM terminating a requeued job) saves nothing more.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


def _save_and_stop(trainer, final: str) -> None:
    """Save a checkpoint to ``final`` (a temporary name, then renamed) and stop training cleanly."""
    tmp = str(Path(final).with_name(f".tmp-{Path(final).name}"))
    trainer.save_checkpoint(tmp)
    if trainer.is_global_zero:
        os.replace(tmp, final)
    trainer.should_stop = True
    # Stopping ends training, and ModelCheckpoint would then write last.ckpt *after* this
    # checkpoint captured its state; the resumed run would take that file for a foreign one,
    # write last-v1.ckpt and leave a stale last.ckpt behind. This process is about to end, so
    # its checkpoint callbacks stop writing "last" files.
    for callback in trainer.checkpoint_callbacks:
        if hasattr(callback, "save_last"):
            callback.save_last = False


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
        if threading.current_thread() is threading.main_thread():
            signal.signal(self.signum, self._handler)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.drill_at_step is not None and trainer.global_step == self.drill_at_step and not self.signalled:
            os.kill(os.getpid(), self.signum)
        if not trainer.strategy.reduce_boolean_decision(self.signalled, all=False):
            return
        final = trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)
        _save_and_stop(trainer, final)
        if trainer.is_global_zero:
            log.info("preemption: checkpoint at step %d saved to %s", trainer.global_step, final)
            if self.requeue:
                self._requeue()
        self.saved_path = final
        self.signalled = False

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


class CheckpointOnSigterm(L.Callback):
    """On ``SIGTERM``: save ``last.ckpt`` (:meth:`checkpoint_path`) at the end of the current batch,
    stop, exit with 143.

    Installed when training starts (after Lightning's own SIGTERM handler, which it keeps
    calling); before that, SIGTERM ends the process at once, with status 143 too.
    """

    EXIT_CODE = 128 + int(signal.SIGTERM)

    def __init__(self):
        self.signalled = False
        self.saved_path: str | None = None
        self._previous = None

    def on_train_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is threading.main_thread():  # Lightning restores it at teardown
            self._previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._handler)

    def _handler(self, signum, frame) -> None:
        self.signalled = True
        if callable(self._previous):
            self._previous(signum, frame)

    @staticmethod
    def checkpoint_path(trainer) -> str:
        """``last.ckpt`` in the ModelCheckpoint's folder, else ``<default_root_dir>/checkpoints/``;
        in a SLURM job (a :class:`RequeueOnPreemption` callback) an ``hpc_ckpt_<n>.ckpt``, which
        the job resumes from when SLURM requeues it."""
        if any(isinstance(c, RequeueOnPreemption) for c in trainer.callbacks):
            return trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)
        callback = trainer.checkpoint_callback
        if getattr(callback, "dirpath", None):
            return os.path.join(callback.dirpath, f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}")
        return os.path.join(trainer.default_root_dir, "checkpoints", "last.ckpt")

    def _save(self, trainer) -> None:
        if any(isinstance(c, RequeueOnPreemption) and c.saved_path for c in trainer.callbacks):
            trainer.should_stop = True  # SLURM ends a requeued job: its checkpoint is saved already
            return
        final = self.checkpoint_path(trainer)
        callback = trainer.checkpoint_callback
        if getattr(callback, "dirpath", None) and Path(final).parent == Path(callback.dirpath):
            callback.last_model_path = final  # the resumed run writes last.ckpt again, not last-v1.ckpt
        if trainer.is_global_zero:
            Path(final).parent.mkdir(parents=True, exist_ok=True)
        _save_and_stop(trainer, final)
        self.saved_path = final
        resume = ("a requeued job resumes from it" if Path(final).name.startswith("hpc_ckpt_")
                  else f"Resume with --ckpt_path {final}")
        log.warning("SIGTERM: checkpoint at step %d saved to %s; training stopped (exit status %d). %s",
                    trainer.global_step, final, self.EXIT_CODE, resume)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.saved_path is None and trainer.strategy.reduce_boolean_decision(self.signalled, all=False):
            self._save(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not (self.signalled or isinstance(exception, SIGTERMException)):
            return
        fitting = trainer.state.fn == TrainerFn.FITTING
        if self.saved_path is None and fitting and trainer.global_step > 0 and trainer.world_size == 1:
            try:  # SIGTERM during validation: Lightning stopped before a batch end (one process:
                # several would each have to save, and may not all be here)
                self._save(trainer)
            except Exception as error:  # the exit status below matters more than this checkpoint
                log.error("SIGTERM: saving a checkpoint failed: %s", error)
        if isinstance(exception, SystemExit) and not exception.code:
            exception.code = self.EXIT_CODE  # Lightning's SIGTERMException exits with status 0
