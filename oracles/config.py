"""Build an oracle from a YAML snippet (``class_path`` / ``init_args``), e.g. ``configs/oracles/qed.yaml``.

Mistakes in a snippet are :class:`networks.configurable.ConfigError`\\ s naming the file: a missing
or misspelled ``init_args`` field, and a missing ``class_path`` — without one, jsonargparse would
build the abstract :class:`oracles.base.Oracle`, which fails only when it first scores, after a run
has sampled its reference. :func:`check_oracles_in` finds the same in a whole run config.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from jsonargparse import ArgumentParser

from networks.configurable import ConfigError, parse_error_message
from oracles.base import MoleculeOracle, Oracle

EXAMPLE = "e.g. class_path: oracles.rdkit_properties.QED (ready-made snippets: configs/oracles/)"


def unimplemented(cls) -> bool:
    """Whether ``cls`` is an oracle base class that cannot score (``Oracle``, ``MoleculeOracle``)."""
    if not (isinstance(cls, type) and issubclass(cls, Oracle)):
        return False
    if cls.__call__ is Oracle.__call__:
        return True
    return (issubclass(cls, MoleculeOracle) and cls.compute is MoleculeOracle.compute
            and cls.compute_batch is MoleculeOracle.compute_batch
            and cls.score_uncached is MoleculeOracle.score_uncached)  # oracles.custom scores strings


def _resolve(class_path: str):
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None  # the config parser reports an unknown class itself


def check_oracles_in(config, where: str = "the config") -> None:
    """Raise :class:`ConfigError` for any oracle in a parsed config (a jsonargparse Namespace, or
    dicts and lists) whose class is an abstract base — a snippet without ``class_path``."""
    def walk(value, key: str, source: str) -> None:
        if hasattr(value, "as_dict"):
            value = value.as_dict()
        if isinstance(value, dict):
            source = str(value.get("__path__") or source)
            class_path = value.get("class_path")
            if isinstance(class_path, str) and unimplemented(_resolve(class_path)):
                raise ConfigError(f"{key} in {source}: the oracle has no class_path, so the base class "
                                  f"{class_path}, which cannot score, would be built; name an oracle class, {EXAMPLE}")
            for name, item in value.items():
                walk(item, f"{key}.{name}" if key else name, source)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{key}[{i}]", source)

    walk(config, "", where)


def oracle_from_config(config: str | Path | dict) -> Oracle:
    """Validate the snippet against the oracle classes' signatures and instantiate it."""
    source = "oracle config"
    if not isinstance(config, dict):
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"oracle config not found: {path}")
        source = f"oracle config {path}"
        try:
            config = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"{source} is not valid YAML: {error}") from None
    if not isinstance(config, dict) or "class_path" not in config:
        raise ConfigError(f"{source} has no class_path: name the oracle class, {EXAMPLE}")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--oracle", type=Oracle, required=True)
    try:
        namespace = parser.parse_object({"oracle": config})
    except Exception as error:  # jsonargparse's ArgumentError: names the field that does not validate
        raise ConfigError(f"{source}: {parse_error_message(error)} — correct it in the file") from None
    check_oracles_in(namespace.oracle, source)
    return parser.instantiate_classes(namespace).oracle
