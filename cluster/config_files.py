"""How ``main.py`` reads config files: interpolation across composed files, and old paths.

Configs compose: a base per task family plus short overrides, each a further ``--config``
(later files win; a nested class given as a path to a YAML file, e.g. ``oracle:
../oracles/qed.yaml``, is read relative to the file that names it). Values may refer to others
with OmegaConf interpolation, resolved after all files and flags are merged, so a run's output
folder is named once (``trainer.default_root_dir``) and ``${trainer.default_root_dir}`` elsewhere
follows a later override or ``--trainer.default_root_dir``. The config a run saves holds the
resolved values.

Configs that were split into base + override are listed in ``configs/moved.yaml``; an old path
still runs, as the files it became, with a warning naming the new command.
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]  # the repository: configs/ and main.py
MOVED = ROOT / "configs" / "moved.yaml"
PARSER_KWARGS = {"parser_mode": "omegaconf+"}

log = logging.getLogger(__name__)


def enable_interpolation() -> None:
    """``${trainer.default_root_dir}`` means the key from the top of the config, whichever
    subcommand nests it (jsonargparse rewrites it to a relative interpolation when loading)."""
    from jsonargparse import set_parsing_settings

    try:
        set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    except TypeError as error:  # an older jsonargparse
        raise SystemExit("rewardfit's configs need jsonargparse >= 4.42 with omegaconf: "
                         f"pip install -U 'jsonargparse[signatures,omegaconf]' ({error})") from None


def moved_configs() -> dict[str, list[str]]:
    """Old config path (relative to the repository) → the arguments that replace it."""
    table = yaml.safe_load(MOVED.read_text()) if MOVED.is_file() else None
    return {old: shlex.split(new) for old, new in (table or {}).items()}


def _keys(path: str) -> list[str]:
    """``path`` as keys of the table (relative to the repository): as resolved from here, and as
    written (a path relative to the repository given from another directory)."""
    p = Path(path).expanduser()
    keys = [] if p.is_absolute() else [Path(os.path.normpath(p)).as_posix()]
    try:
        keys.insert(0, (p if p.is_absolute() else Path.cwd() / p).resolve().relative_to(ROOT).as_posix())
    except ValueError:
        pass
    return keys


def _absolute(args: list[str]) -> list[str]:
    """The replacement's config paths made absolute, so it runs from any working directory."""
    out, after_config = [], False
    for arg in args:
        out.append(str(ROOT / arg) if after_config and not Path(arg).is_absolute() else arg)
        after_config = arg in ("--config", "-c")
    return out


def expand_moved(args: list[str]) -> list[str]:
    """``--config OLD`` for a moved config (a file that no longer exists) → its replacement."""
    table, out, k = None, [], 0
    while k < len(args):
        arg = args[k]
        flag, value, step = None, None, 1
        if arg in ("--config", "-c") and k + 1 < len(args):
            flag, value, step = arg, args[k + 1], 2
        elif arg.startswith("--config="):
            flag, value = "--config", arg.split("=", 1)[1]
        if value is not None and not Path(value).exists():
            table = moved_configs() if table is None else table
            key = next((k for k in _keys(value) if k in table), None)
            if key is not None:
                new = table[key]
                log.warning("%s was split into composable configs; running it as: python main.py %s",
                            value, shlex.join(new))
                out += _absolute(new)
                k += step
                continue
        out.append(arg)
        k += 1
    return out
