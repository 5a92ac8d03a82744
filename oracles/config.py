"""Build an oracle from a YAML snippet (``class_path`` / ``init_args``), e.g. ``configs/oracles/qed.yaml``."""

from __future__ import annotations

from pathlib import Path

import yaml
from jsonargparse import ArgumentParser

from oracles.base import Oracle


def oracle_from_config(config: str | Path | dict) -> Oracle:
    """Validate the snippet against the oracle classes' signatures and instantiate it."""
    if not isinstance(config, dict):
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"oracle config not found: {path}")
        config = yaml.safe_load(path.read_text())
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--oracle", type=Oracle, required=True)
    namespace = parser.parse_object({"oracle": config})
    return parser.instantiate_classes(namespace).oracle
