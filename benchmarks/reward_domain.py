"""Build a learned reward model's input domain (``oracles.domain``) from its training data.

    python benchmarks/reward_domain.py --checkpoint checkpoints/reward-qm9 --config configs/reward_models/qm9.yaml

The model's own datamodule (``--config``, the one that trained it; ``--data-path`` overrides its
``data.path``) rebuilds the same split. ``n_reference`` training inputs drawn at random become the
reference set, the threshold is the ``1 − coverage`` quantile of the *test* inputs' nearest-
neighbour similarity to it, and ``domain.npz`` (reference fingerprints, threshold, coverage) is
written beside the model. The command prints the threshold and the share of test inputs inside.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from networks.configurable import Configurable  # noqa: E402,F401  (registers class paths)
from oracles.domain import InputDomain  # noqa: E402


def build_datamodule(config: str, data_path: str | None):
    import importlib

    spec = yaml.safe_load(Path(config).read_text())["data"]
    module, _, name = spec["class_path"].rpartition(".")
    args = dict(spec.get("init_args") or {})
    if data_path:
        args["path"] = data_path
    data = getattr(importlib.import_module(module), name)(**args)
    data.setup("fit")
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="the model directory; domain.npz is written into it")
    parser.add_argument("--config", required=True, help="the training config whose data: section made the model")
    parser.add_argument("--data-path", help="overrides the config's data.path")
    parser.add_argument("--n-reference", type=int, default=10_000)
    parser.add_argument("--coverage", type=float, default=0.99)
    args = parser.parse_args(argv)

    from lightning_modules.reward_model import load_reward_model, resolve_reward_checkpoint

    directory = resolve_reward_checkpoint(args.checkpoint)
    if not directory.is_dir():
        raise SystemExit(f"{directory} is not a model directory (domain.npz goes beside config.json)")
    model = load_reward_model(directory)
    kind = model.domain
    data = build_datamodule(args.config, args.data_path)
    split = data.data
    if "test" not in split or not len(split["test"][0]):
        raise SystemExit("the config's split has no test set to calibrate the threshold on")
    started = time.monotonic()
    domain = InputDomain.build(list(split["train"][0]), list(split["test"][0]), kind,
                               n_reference=args.n_reference, coverage=args.coverage)
    path = domain.save(directory)
    inside = 1.0 - domain.outside(list(split["test"][0])).mean()
    print(json.dumps({"file": str(path), "kind": kind, "reference": len(domain.reference),
                      "threshold": round(domain.threshold, 4), "coverage": args.coverage, "ranges": domain.ranges,
                      "test_inside": round(float(inside), 4), "seconds": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()
