"""Files and folders written through a temporary name get the permissions of any other file.

``tempfile.mkstemp`` creates its file with mode 0600 and ``mkdtemp`` its folder with 0700,
whatever the umask: renamed into place, a checkpoint, a Parquet sample set or a cache folder
would stay private to its writer, and a team's shared run folder could not read it.
:func:`honour_umask` gives such a path the mode a plain ``open``/``mkdir`` would have given it.
:func:`file_sha256` names a file by its content (a source pickle, an oracle's code, model weights);
:func:`cache_root` is where rewardfit keeps what it derives once (corpora, forests, data splits).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def cache_root() -> Path:
    """``$REWARDFIT_CACHE``, or ``~/.cache/rewardfit``: each derived artefact has a folder under it."""
    return Path(os.environ.get("REWARDFIT_CACHE", Path.home() / ".cache" / "rewardfit"))


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc/self/status``);
    elsewhere set and restored at once."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path, directory: bool = False) -> None:
    """Give ``path`` (made by ``mkstemp``/``mkdtemp``) the mode ``open``/``mkdir`` would have given."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_digest(model_dir) -> str | None:
    """The first 16 hex digits of the SHA-256 of ``model_dir``'s ``model.safetensors`` (None when it
    has none): which weights a results row was measured on. A model made again on another machine
    or with another thread count differs in its float rounding, so results CSVs name the file."""
    path = Path(model_dir) / "model.safetensors"
    return file_sha256(path)[:16] if path.is_file() else None


def write_lines(path, lines) -> None:
    """Write ``lines`` one a line to ``path`` whole or not at all: through a temporary file in the
    same folder, renamed into place, with the mode a plain ``open`` would have given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "w") as f:
            f.writelines(s + "\n" for s in lines)
        honour_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
