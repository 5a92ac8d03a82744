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

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from networks.architectures import CheckpointError


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file is truncated or damaged."""


def verify_checkpoint_file(path: str | Path) -> None:
    """Raise :class:`CorruptCheckpointError` unless ``path`` is an intact ``torch.save`` zip file.

    Every record is read and its CRC-32 compared (records written without one, CRC 0, as
    ``torch.serialization.set_crc32_options(False)`` does, are only read). Old non-zip
    checkpoints are left to ``torch.load``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    hint = ("it was probably cut short by a full disk or a killed job, or damaged in a copy; "
            "resume from an earlier checkpoint")
    if size == 0:
        raise CorruptCheckpointError(f"checkpoint {path} is empty (0 bytes): {hint}")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":  # torch's legacy (pre-1.6) format is a pickle stream, not a zip
        if magic[:1] == b"\x80":
            return
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

    Args:
        module: when set, each loaded checkpoint is checked against this LightningModule's
            hyper-parameters and tensor shapes (a checkpoint of another model config is an error
            naming what differs).
    """

    def __init__(self, module=None):
        super().__init__()
        self.module = module

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's fsspec path
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # not named after the target: Lightning takes any file containing "hpc_ckpt_" for an HPC
        # checkpoint and parses its digits, so a leftover of a killed job must not look like one
        fd, tmp = tempfile.mkstemp(prefix=".tmp-checkpoint-", suffix=".partial", dir=path.parent)
        try:
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
        if local:
            verify_checkpoint_file(path)
        try:
            checkpoint = super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError) as error:
            if isinstance(error, FileNotFoundError):
                raise
            if "PytorchStreamReader" in str(error) or isinstance(error, (EOFError, zipfile.BadZipFile,
                                                                         pickle.UnpicklingError)):
                raise CorruptCheckpointError(f"checkpoint {path} is truncated or corrupt: {error}") from error
            raise
        if self.module is not None:
            from lightning_modules.checkpoint_checks import check_compatible

            check_compatible(self.module, checkpoint, path)
        return checkpoint
