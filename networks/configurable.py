"""Objects stored in checkpoints as plain data: ``{"class_path": …, "init_args": {…}}``.

Architectures and reward-model encoders keep their constructor arguments in ``init_args``, so a
checkpoint records them without pickling classes (it stays loadable with
``torch.load(weights_only=True)``) and ``from_config`` rebuilds them.

A class path read from a checkpoint or a config is imported, and importing a module runs its
code: :func:`check_class_path` lets through only rewardfit's own packages, torch / transformers /
Lightning, and the classes named in the run's own config (``main.py`` registers them with
:func:`allow_class_paths`); anything else is refused *before* it is imported.
"""

from __future__ import annotations

import importlib
import re

TRUSTED_PACKAGES = ("networks", "datamodules", "oracles", "lightning_modules", "callbacks",
                    "torch", "transformers", "lightning", "pytorch_lightning", "lightning_fabric", "torchmetrics")
_allowed_class_paths: set[str] = set()
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


class ConfigError(ValueError):
    """A config (or a checkpoint's stored config) names a class or a value that cannot be used."""


class UntrustedClassPathError(ConfigError):
    """A class path outside the project's packages, not named in the run's config."""


def allow_class_paths(paths) -> None:
    """Trust these class paths too (those named in the run's own config)."""
    _allowed_class_paths.update(p for p in paths if isinstance(p, str))


def check_class_path(class_path, where: str = "a stored config") -> str:
    """Return ``class_path`` if it may be imported; raise :class:`UntrustedClassPathError` (or
    :class:`ConfigError` for a malformed one) without importing anything otherwise."""
    if not isinstance(class_path, str) or not _DOTTED.fullmatch(class_path):
        raise ConfigError(f"{where} names class {class_path!r}, which is not a dotted class path "
                          "such as networks.architectures.GPT")
    if class_path.split(".", 1)[0] in TRUSTED_PACKAGES or class_path in _allowed_class_paths:
        return class_path
    raise UntrustedClassPathError(
        f"{where} names class {class_path!r}, which is not imported: only rewardfit's own packages "
        f"({', '.join(TRUSTED_PACKAGES[:5])}), torch, transformers and Lightning, and classes named in "
        "this run's config are. If you wrote that class, name it in the run's config (class_path) as well, "
        "or from Python allow it with networks.configurable.allow_class_paths")


def class_paths_in(config) -> set[str]:
    """Every ``class_path`` (and Lightning's ``_class_path``) value in nested dicts and lists."""
    if hasattr(config, "as_dict"):
        config = config.as_dict()
    found, stack = set(), [config]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            found.update(v for k, v in value.items() if k in ("class_path", "_class_path") and isinstance(v, str))
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
    return found


def import_class_path(class_path, where: str = "a stored config"):
    """The object at an allowed ``class_path`` (:func:`check_class_path`), imported."""
    module, _, name = check_class_path(class_path, where).rpartition(".")
    return getattr(importlib.import_module(module), name)


_NOISE = ("Subtypes:", "Given value", "Errors:", "- Expected a <class 'NoneType'>",
          "Does not validate against any of the Union subtypes")


def parse_error_message(error: BaseException) -> str:
    """jsonargparse's error on one line, without the Union bookkeeping around the actual reason."""
    lines = (line.strip() for line in str(error).strip().splitlines())
    message = " ".join(line.removeprefix("- ") for line in lines if line and not line.startswith(_NOISE))
    return re.sub(r'^Parser key "\w+":\s*', "", message)


def check_init_args(target: type, init_args: dict, where: str) -> None:
    """Validate ``init_args`` against ``target``'s signature with jsonargparse (the CLI's own
    parser), so that ``n_layer: 2.5`` is an error naming the field instead of a failure deep in
    the model build."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--target", type=target)
    try:
        parser.parse_object({"target": {"class_path": f"{target.__module__}.{target.__qualname__}",
                                        "init_args": dict(init_args)}})
    except Exception as error:  # ArgumentError / ValueError / TypeError: all say what does not validate
        raise ConfigError(f"{where}: {parse_error_message(error)} — correct the value in the config") from None


class Configurable:
    init_args: dict = {}

    def to_config(self) -> dict:
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(self.init_args)}

    @classmethod
    def from_config(cls, config):
        """``config`` as written by ``to_config`` (or already an instance) → an instance of a
        subclass of the class this is called on."""
        if isinstance(config, cls):
            return config
        if hasattr(config, "as_dict"):  # a jsonargparse Namespace
            config = config.as_dict()
        if not isinstance(config, dict) or "class_path" not in config:
            raise ConfigError(f"{cls.__name__} config {config!r} has no class_path: name the class, "
                              "e.g. {class_path: networks.architectures.GPT, init_args: {...}}")
        where = f"{cls.__name__.lower()} config"
        target = import_class_path(config["class_path"], where)
        if not (isinstance(target, type) and issubclass(target, cls)):
            raise TypeError(f"{config['class_path']} is not an {cls.__name__}")
        init_args = config.get("init_args") or {}
        check_init_args(target, init_args, where)
        return target(**init_args)


def config_leaves(value, prefix: str) -> dict[str, object]:
    """Flatten nested config dicts: {'init_args': {'n_embd': 32}} → {'prefix.n_embd': 32}."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = prefix if key == "init_args" else f"{prefix}.{key}"
            out.update(config_leaves(item, name))
        return out
    return {prefix: value}


def same_settings(stored, current) -> bool:
    """Whether two recorded settings agree leaf by leaf, a missing leaf counting as ``None``: an
    argument added later with a ``None`` default must not make older records look different."""
    a, b = config_leaves(stored, ""), config_leaves(current, "")
    return all(a.get(name) == b.get(name) for name in set(a) | set(b))
