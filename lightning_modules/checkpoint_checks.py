"""Does a checkpoint belong to this model? Checked before Lightning copies any weight.

Resuming with a changed config (another width, another tokenizer, another LightningModule) would
otherwise end in ``load_state_dict``'s list of every mismatched tensor — hundreds of lines that
say *which* tensors do not fit but not *why*. :func:`check_compatible` compares the tensors'
names and shapes, and when they do not fit, raises :class:`IncompatibleCheckpointError` that names
the setting that differs (the network config — ``policy``/``architecture``/``encoder`` — and the
tokenizer, from the stored hyper-parameters; the module class when recorded) and a few of the
tensors. Settings that change no tensor (learning rate, a moved checkpoint path) are never an
error: only tensors that do not fit are.
"""

from __future__ import annotations

from networks.architectures import CheckpointError
from networks.configurable import UntrustedClassPathError, check_class_path, class_paths_in, import_class_path
from networks.configurable import config_leaves as _leaves

NETWORK_KEYS = ("policy", "architecture", "encoder", "tokenizer")  # hyper-parameters that shape tensors
SHOWN = 4  # tensors named per kind of mismatch


class IncompatibleCheckpointError(CheckpointError):
    """A checkpoint was saved by another model config or another LightningModule."""


def config_differences(stored: dict, current: dict) -> list[str]:
    """'name: checkpoint X, now Y' for each network-shaping setting that differs."""
    out = []
    for key in NETWORK_KEYS:
        if key not in stored or key not in current:  # another module's setting: the class says it
            continue
        a, b = _leaves(stored.get(key), key), _leaves(current.get(key), key)
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                out.append(f"{name}: {a.get(name)!r} in the checkpoint, {b.get(name)!r} now")
    return out


def _shown(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _same_class(class_path: str, cls: type, path=None) -> bool:
    """Whether ``class_path`` (as LightningCLI records it, e.g. via a package re-export) is ``cls``.
    A class path outside the project's packages and the run's config is refused, not imported."""
    if class_path == f"{cls.__module__}.{cls.__qualname__}":
        return True
    try:
        return import_class_path(class_path, f"checkpoint {path}" if path else "the checkpoint") is cls
    except UntrustedClassPathError:
        raise
    except (ImportError, AttributeError, ValueError):
        return class_path.rpartition(".")[2] == cls.__qualname__


def check_stored_class_paths(hparams: dict, path=None) -> None:
    """Refuse, before anything is imported, a checkpoint whose hyper-parameters name a class outside
    the project's packages, torch/transformers/Lightning and the run's config."""
    for class_path in sorted(class_paths_in(hparams)):
        check_class_path(class_path, f"checkpoint {path}" if path else "the checkpoint")


def check_compatible(module, checkpoint: dict, path=None) -> None:
    """Raise :class:`IncompatibleCheckpointError` if ``checkpoint``'s tensors do not fit ``module``."""
    stored_state = checkpoint.get("state_dict")
    if stored_state is None:
        return  # not a Lightning checkpoint; let Lightning say so
    current_state = module.state_dict()
    missing = [k for k in current_state if k not in stored_state]
    unexpected = [k for k in stored_state if k not in current_state]
    shapes = [f"{k} {list(stored_state[k].shape)} in the checkpoint, {list(v.shape)} now"
              for k, v in current_state.items()
              if k in stored_state and hasattr(stored_state[k], "shape") and stored_state[k].shape != v.shape]
    strict = getattr(module, "strict_loading", True)
    if not shapes and not (strict and (missing or unexpected)):
        return
    hparams = checkpoint.get("hyper_parameters") or {}
    reasons = []
    this_class = f"{type(module).__module__}.{type(module).__qualname__}"
    stored_class = hparams.get("_class_path") or checkpoint.get("module_class")
    if stored_class and not _same_class(stored_class, type(module), path):
        reasons.append(f"it was saved by {stored_class}, this run is {this_class}")
    reasons += config_differences(hparams, dict(getattr(module, "hparams", {})))
    details = []
    if shapes:
        details.append(f"{len(shapes)} tensor(s) differ in shape: {_shown(shapes)}")
    if strict and missing:
        details.append(f"{len(missing)} tensor(s) of this model are not in it: {_shown(missing)}")
    if strict and unexpected:
        details.append(f"{len(unexpected)} tensor(s) in it are not in this model: {_shown(unexpected)}")
    where = f"checkpoint {path}" if path else "the checkpoint"
    why = "; ".join(reasons) if reasons else "no recorded setting explains it"
    raise IncompatibleCheckpointError(
        f"{where} does not fit this model ({this_class}) — {why}. " + "; ".join(details)
        + ". Resume with the config the checkpoint was made with, or start a new run without --ckpt_path")
