"""Checkpoint files on disk: written atomically, checked for damage before they are read.

Why not Lightning's default ``TorchCheckpointIO``: it writes through an fsspec transaction, whose
local temporary file is made by ``tempfile.mkstemp()`` in the *system* temporary directory and
moved into place with ``shutil.move``. When that directory is on another filesystem than the
run (node-local ``/tmp`` and a shared ``runs/`` on a cluster, the usual case), the move is a copy
into the final name: a full disk or a killed job during that copy leaves a half-written
``last.ckpt`` where the good one was. Nothing is fsync'ed either, so a crash of the node can
leave a renamed but empty file. :class:`SafeCheckpointIO` writes the temporary file next to the
target, fsyncs it, renames it over the target with ``os.replace`` (atomic on POSIX) and fsyncs
the directory; any failure removes the temporary file and leaves the previous checkpoint as it was.

Reading: a truncated or overwritten file otherwise fails deep inside ``torch.load`` with a zip or
unpickling traceback, or — bytes changed inside a tensor — loads silently with wrong weights.
:func:`verify_checkpoint_file` checks the zip structure and the CRC-32 of every record that
``torch.save`` wrote, and raises :class:`CorruptCheckpointError` naming the file.

With ``module`` set (``main.py`` sets it to the run's LightningModule), a loaded checkpoint is also
checked against that module (:func:`lightning_modules.checkpoint_checks.check_compatible`) before
Lightning copies any weight.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from networks.architectures import CheckpointError
from networks.files import honour_umask

log = logging.getLogger(__name__)
TRUST_ENV = "REWARDFIT_TRUST_CHECKPOINT_CODE"  # "1": load checkpoints with pickled Python objects


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file is truncated or damaged."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint path names nothing, or a directory."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds pickled Python objects, which only a trusted-code load may run."""


def trust_checkpoint_code(flag: bool = False) -> bool:
    """Whether checkpoints may run code when loaded: ``--trust_checkpoint_code true`` or
    ``REWARDFIT_TRUST_CHECKPOINT_CODE=1``."""
    return bool(flag) or os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def verify_checkpoint_file(path: str | Path) -> None:
    """Raise :class:`CorruptCheckpointError` unless ``path`` is an intact ``torch.save`` zip file.

    Every record is read and its CRC-32 compared (records written without one, CRC 0, as
    ``torch.serialization.set_crc32_options(False)`` does, are only read). Old non-zip
    checkpoints are left to ``torch.load``."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.ckpt"))[:5]
        raise CheckpointNotFoundError(
            f"checkpoint {path} is a directory, not a checkpoint file: name a .ckpt file"
            + (f" in it ({', '.join(found)})" if found else " (it holds none)"))
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    hint = ("it was probably cut short by a full disk or a killed job, or damaged in a copy; "
            "resume from an earlier checkpoint")
    if size == 0:
        raise CorruptCheckpointError(f"checkpoint {path} is empty (0 bytes): {hint}")
    with open(path, "rb") as handle:
        head = handle.read(256)
    magic = head[:4]
    if magic != b"PK\x03\x04":  # torch's legacy (pre-1.6) format is a pickle stream, not a zip
        if magic[:1] == b"\x80":
            return
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as error:  # a character cut at the 256th byte is still text
            text = head[:error.start].decode("utf-8") if error.start >= len(head) - 3 else None
        if text and all(c.isprintable() or c in "\t\r\n" for c in text):
            first = text.strip().splitlines()[0][:60] if text.strip() else ""
            raise CorruptCheckpointError(
                f"checkpoint {path} is a text file (it begins {first!r}), not a checkpoint: a YAML config "
                "goes to --config; --ckpt_path takes a .ckpt file that main.py fit wrote")
        raise CorruptCheckpointError(f"checkpoint {path} ({size} bytes) is not a torch checkpoint: {hint}")
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0:
                    continue
                with archive.open(info) as record:  # ZipExtFile checks the CRC at the end
                    while record.read(1 << 24):
                        pass
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise CorruptCheckpointError(f"checkpoint {path} ({size} bytes) is truncated or corrupt ({error}): "
                                     f"{hint}") from None


class SafeCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with atomic, fsync'ed local writes and verified reads.

    Checkpoints are loaded with ``torch.load(weights_only=True)``: tensors and plain data only,
    which is all rewardfit writes. Unpickling arbitrary Python objects runs code chosen by whoever
    made the file: that happens only when a caller passes ``weights_only=False`` itself or
    ``trust_code`` is set (``main.py`` refuses ``--weights_only false`` unless
    ``--trust_checkpoint_code true`` or ``REWARDFIT_TRUST_CHECKPOINT_CODE=1``, and then sets it).

    Args:
        module: when set, each loaded checkpoint is checked against this LightningModule's
            hyper-parameters and tensor shapes (a checkpoint of another model config is an error
            naming what differs).
        trust_code: allow loading pickled Python objects (``weights_only=False``): only for files
            whose origin you trust.
    """

    def __init__(self, module=None, trust_code: bool = False):
        super().__init__()
        self.module = module
        self.trust_code = trust_checkpoint_code(trust_code)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's fsspec path
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # not named after the target: Lightning takes any file containing "hpc_ckpt_" for an HPC
        # checkpoint and parses its digits, so a leftover of a killed job must not look like one
        fd, tmp = tempfile.mkstemp(prefix=".tmp-checkpoint-", suffix=".partial", dir=path.parent)
        try:
            honour_umask(tmp)  # mkstemp's 0600 would stay on the renamed checkpoint
            with os.fdopen(fd, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException as error:
            if os.path.exists(tmp):
                os.unlink(tmp)
            if isinstance(error, OSError):
                raise OSError(error.errno, f"saving checkpoint {path} failed ({error.strerror or error}); "
                                           "the previous file at that path, if any, is unchanged") from error
            raise
        try:  # make the rename itself durable
            directory = os.open(path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(directory)
        except OSError:
            pass
        finally:
            os.close(directory)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        local = "://" not in str(path)
        if weights_only is None:  # torch's default can be switched off by an environment variable
            weights_only = not self.trust_code
        if local:
            verify_checkpoint_file(path)
        try:
            checkpoint = super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError) as error:
            if isinstance(error, FileNotFoundError):
                raise
            if weights_only and "Weights only load failed" in str(error):
                # torch's own message advises weights_only=False: never pass that on
                found = re.search(r"Unsupported global: GLOBAL (\S+)|Unsupported operand \S+", str(error))
                raise UnsafeCheckpointError(
                    f"checkpoint {path} holds pickled Python objects"
                    + (f" ({found.group(0)})" if found else "")
                    + ", which rewardfit's checkpoints never do, and was not loaded: a pickled object "
                    "can run code. Resume from a checkpoint that rewardfit wrote") from None
            if "PytorchStreamReader" in str(error) or isinstance(error, (EOFError, zipfile.BadZipFile,
                                                                         pickle.UnpicklingError)):
                raise CorruptCheckpointError(f"checkpoint {path} is truncated or corrupt: {error}") from error
            raise
        if self.module is not None:
            from lightning_modules.checkpoint_checks import check_compatible

            check_compatible(self.module, checkpoint, path)
        return checkpoint


# ---------------------------------------------------------------- one run per checkpoint folder
class RunFolderError(CheckpointError):
    """A new run would write its checkpoints next to another run's."""


def release(handles: list) -> None:
    """Unlock the folders :func:`claim_run_folder` locked."""
    while handles:
        os.close(handles.pop())


def checkpoint_folders(trainer) -> list[Path]:
    """The local folders this trainer's checkpoints go to, as Lightning resolves them: each
    ModelCheckpoint's ``dirpath``; without one, a logger's folder when its version is fixed (an
    automatic version is a new folder per run) or ``<default_root_dir>/checkpoints``; and
    ``<default_root_dir>/checkpoints`` when checkpointing is off (a SIGTERM checkpoint goes there)."""
    folders = []
    for callback in trainer.checkpoint_callbacks or [None]:
        dirpath = getattr(callback, "dirpath", None)
        if dirpath is None and callback is not None and trainer.loggers:
            logger = trainer.loggers[0]
            version = getattr(logger, "_version", None)
            if version is None:
                continue
            version = version if isinstance(version, str) else f"version_{version}"
            dirpath = os.path.join(logger.save_dir or trainer.default_root_dir, str(logger.name), version, "checkpoints")
        elif dirpath is None:
            dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
        if "://" not in str(dirpath) and Path(dirpath) not in folders:
            folders.append(Path(dirpath))
    return folders


def resumes(trainer, ckpt_path) -> bool:
    """Whether ``fit(ckpt_path=...)`` continues a run: a ``ckpt_path``, or none on SLURM with an
    ``hpc_ckpt_*`` in ``default_root_dir`` (a requeued job; Lightning resumes from it)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    if ckpt_path:
        return True
    return SLURMEnvironment.detect() and trainer._checkpoint_connector._hpc_resume_path is not None


def claim_run_folder(trainer, ckpt_path=None, overwrite: bool = False) -> list:
    """Make sure a new run does not write its checkpoints among another run's.

    Each checkpoint folder is locked (``flock``; :func:`release` or the process's end unlocks it),
    so a second run started into the same folder at the same time is refused. A run that does not resume (no ``--ckpt_path``, no HPC
    checkpoint that SLURM's requeue resumes from) is refused if the folders, or
    ``default_root_dir``'s ``hpc_ckpt_*``, already hold checkpoints — Lightning would write
    ``last-v1.ckpt`` beside the other run's ``last.ckpt``, which the documented resume command
    would then pick up — unless ``overwrite`` (they are deleted). Only global rank 0 locks and
    deletes. Returns the lock handles for :func:`release`."""
    import fcntl

    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    rank, resuming = getattr(rank_zero_only, "rank", 0), resumes(trainer, ckpt_path)
    folders = checkpoint_folders(trainer)
    handles = []
    if rank == 0 and trainer.checkpoint_callbacks:  # without checkpointing only a SIGTERM writes one
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            handle = os.open(folder, os.O_RDONLY)  # the folder itself is locked: no lock file is left
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(handle)
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    continue  # a filesystem without flock on folders (some NFS): no lock, the check below stays
                release(handles)
                raise RunFolderError(
                    f"another run is writing checkpoints into {folder} right now; two runs in one folder "
                    "would mix their checkpoints. Give this run its own folder (--trainer.default_root_dir, "
                    "or the ModelCheckpoint's dirpath)") from None
            handles.append(handle)
    if resuming or (overwrite and rank != 0):
        return handles
    root = Path(trainer.default_root_dir)
    found = [p for folder in folders for p in sorted(folder.glob("*.ckpt"))]
    found += sorted(root.glob("hpc_ckpt_*.ckpt")) if "://" not in str(root) else []
    if not found:
        return handles
    if overwrite:
        for path in found:
            path.unlink(missing_ok=True)
        log.warning("--overwrite_checkpoints: deleted %d checkpoint(s) of an earlier run: %s",
                    len(found), ", ".join(map(str, found)))
        return handles
    release(handles)
    last = next((p for p in found if p.name == "last.ckpt"), found[-1])
    shown = ", ".join(map(str, found[:3])) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    raise RunFolderError(
        f"this new run would write its checkpoints among those of an earlier run ({shown}); the resume "
        f"command would then pick up either run's. To continue that run, add --ckpt_path {last}; to start "
        "over and delete its checkpoints, add --overwrite_checkpoints true; or give this run its own folder "
        "(--trainer.default_root_dir, or the ModelCheckpoint's dirpath)")
