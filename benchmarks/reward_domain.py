"""Build a learned reward model's input domain (``oracles.domain``) from its training data, and
measure how much of a policy's output lies outside it.

    python benchmarks/reward_domain.py build --checkpoint checkpoints/reward-qm9 --config configs/reward_models/qm9.yaml
    python benchmarks/reward_domain.py measure --checkpoint reward-qm9 --policy molgpt-qm9 --n 2000

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

from networks.configurable import import_class_path  # noqa: E402
from oracles.domain import InputDomain  # noqa: E402


def build_datamodule(config: str, data_path: str | None):
    spec = yaml.safe_load(Path(config).read_text())["data"]
    args = dict(spec.get("init_args") or {})
    if data_path:
        args["path"] = data_path
    data = import_class_path(spec["class_path"], config)(**args)
    data.setup("fit")
    return data


def measure(args) -> dict:
    """Sample the policy as the multi-objective protocol does (temperature 1, no top-k) and split
    the valid samples' domain failures into similarity and range."""
    import collections

    import torch

    from networks.architectures import Pretrained
    from networks.sampling import sample
    from networks.tokenizers import load_tokenizer
    from oracles.domain import descriptors
    from oracles.learned import LearnedOracle

    oracle = LearnedOracle(args.checkpoint)
    domain = oracle.input_domain
    if domain is None:
        raise SystemExit(f"{args.checkpoint} has no domain.npz: run the build command first")
    tokenizer = load_tokenizer(str(Path("checkpoints") / args.policy) if Path("checkpoints", args.policy).is_dir()
                               else args.policy)
    model = Pretrained(args.policy).build(tokenizer).eval()
    texts = sample(model, tokenizer, args.n, args.max_new_tokens, 1.0, None,
                   generator=torch.Generator().manual_seed(args.seed)).texts
    share = domain.outside_share(texts)  # as the evaluation counts it: over the readable samples
    valid = np.isfinite(share)
    scored = [t for t, v in zip(texts, valid) if v]
    low = domain.similarity(scored) < domain.threshold
    out_of_range = domain.out_of_range(scored)
    assert np.array_equal(low | out_of_range, share[valid] == 1.0)
    sizes = collections.Counter(d[0] for d, r in zip(descriptors(scored, domain.kind), out_of_range) if d and r)
    return {"policy": args.policy, "samples": args.n, "readable": round(float(valid.mean()), 4),
            "outside": round(float((low | out_of_range).mean()), 4), "below_similarity": round(float(low.mean()), 4),
            "out_of_range": round(float(out_of_range.mean()), 4), "out_of_range_sizes": dict(sizes.most_common(5))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write domain.npz beside the model")
    build.add_argument("--checkpoint", required=True, help="the model directory; domain.npz is written into it")
    build.add_argument("--config", required=True, help="the training config whose data: section made the model")
    build.add_argument("--data-path", help="overrides the config's data.path")
    build.add_argument("--n-reference", type=int, default=10_000)
    build.add_argument("--coverage", type=float, default=0.99)
    check = commands.add_parser("measure", help="the share of a policy's samples outside the domain")
    check.add_argument("--checkpoint", required=True)
    check.add_argument("--policy", required=True, help="a generator checkpoint (name under checkpoints/ or a path)")
    check.add_argument("--n", type=int, default=2000)
    check.add_argument("--max-new-tokens", type=int, default=60)
    check.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "measure":
        print(json.dumps(measure(args)))
        return

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
