"""Evaluate finished alignment runs again, on many samples and one shared evaluation seed.

Why: a run's own ``summary.json`` comes from its last validation — ``val_samples`` (often 1,000)
policy samples, drawn with the run's seed, against a reference row drawn with that seed too. At
5 % invalid and an invalid penalty of 4.5, 1,000 samples leave a binomial error of ≈ 0.007 in
validity, ≈ 0.03 in the penalised mean energy: as large as the steps between neighbouring β.
This script separates the two kinds of noise that a β sweep over seeds mixes. It rebuilds each
run's module from the ``config.yaml`` that ``main.py fit`` saved, loads the last checkpoint's
weights, and draws ``--n`` samples with the same ``--seed`` for every run; the reference (the
run's policy before any training) is evaluated once per distinct reference with that seed too.
What remains between runs is then the training's own variation.

Writes ``summary_n{N}_seed{S}.json`` into each run directory, in ``summary.json``'s format, so
that ``benchmarks/era_beta_curve.py --summary summary_n{N}_seed{S}.json`` plots it:

    python benchmarks/era_reevaluate.py runs/era_online_clip/* --n 10000 --seed 100
    python benchmarks/era_beta_curve.py runs/era_online_clip/* --summary summary_n10000_seed100.json \\
        --csv docs/results/era_online_clip_beta_n10000.csv --out docs/img/era_online_clip_beta_n10000.png
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callbacks.alignment_report import summary as alignment_summary, write_summary  # noqa: E402
from datamodules.reference_samples import describe  # noqa: E402
from lightning_modules.checkpoint_io import SafeCheckpointIO, verify_checkpoint_file  # noqa: E402


def final_checkpoint(run_dir: Path) -> Path:
    """The run's newest checkpoint file: the last one a run writes holds its final weights
    (``last.ckpt`` and ``…step=N.ckpt`` of the same step are the same state). Among files of the
    same age, the higher ``step=N`` wins."""
    found = list(run_dir.glob("**/checkpoints/*.ckpt"))
    if not found:
        raise SystemExit(f"{run_dir}: no checkpoint under */checkpoints/")

    def order(path: Path) -> tuple[float, int]:
        match = re.search(r"step=(\d+)", path.name)
        return (path.stat().st_mtime, int(match.group(1)) if match else -1)

    return max(found, key=order)


def run_config(run_dir: Path, checkpoint: Path) -> Path:
    """The ``config.yaml`` that ``main.py fit`` saved for the run: the nearest one above the
    checkpoint (``lightning_logs/version_N/``), else the newest anywhere in the run directory
    (with loggers configured, it sits in the first logger's ``version_N/``, beside ``checkpoints/``)."""
    for parent in checkpoint.parents:
        if (parent / "config.yaml").is_file():
            return parent / "config.yaml"
        if parent == run_dir:
            break
    found = sorted(run_dir.glob("**/config.yaml"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"{run_dir}: no config.yaml (the one main.py fit saves) to rebuild the run from")
    return found[-1]


def build_module(config: Path):
    """The run's LightningModule, built from its saved config exactly as ``main.py fit`` built it."""
    import yaml

    from main import cli_main

    settings = yaml.safe_load(config.read_text())
    # only the model is needed: ``fit``'s own options (ckpt_path, weights_only) and the trainer's
    # (callbacks from the run's own modules, loggers) are not rebuilt; the weights come from the
    # checkpoint the caller loads
    settings = {k: v for k, v in settings.items() if k in ("seed_everything", "model")}
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns about this script's own arguments
    try:
        return cli_main(["--config", yaml.safe_dump(settings)], run=False).model
    finally:
        sys.argv = argv


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (each with a checkpoint and config.yaml)")
    parser.add_argument("--n", type=int, default=10000, help="samples per evaluation")
    parser.add_argument("--seed", type=int, default=100, help="evaluation seed, shared by all runs")
    parser.add_argument("--force", action="store_true", help="evaluate again where the output exists")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    name = f"summary_n{args.n}_seed{args.seed}.json"
    references: dict[str, dict] = {}
    for run_dir in args.runs:
        out = run_dir / name
        if not run_dir.is_dir():
            print(f"{run_dir}: not a directory, skipped", flush=True)
            continue
        if out.is_file() and not args.force:
            print(f"{run_dir}: {name} exists, skipped (--force evaluates again)", flush=True)
            continue
        checkpoint = final_checkpoint(run_dir)
        verify_checkpoint_file(checkpoint)
        module = build_module(run_config(run_dir, checkpoint))
        key = json.dumps([module.hparams["policy"], describe(module.oracle), module.hparams["top_k"],
                          module.hparams["temperature"], module.hparams["max_new_tokens"]], sort_keys=True, default=str)
        start = time.time()
        if key not in references:  # the untrained module's policy is its reference
            references[key] = module.evaluate_policy(args.n, args.seed)
            references[key]["samples/kl_to_reference"] = 0.0
        state = SafeCheckpointIO().load_checkpoint(checkpoint, map_location="cpu")  # tensors and plain data only
        module.load_state_dict(state["state_dict"])
        policy = module.evaluate_policy(args.n, args.seed)
        summary = {**alignment_summary(module, references[key], policy, step=state["global_step"]),
                   "evaluation": {"n": args.n, "seed": args.seed, "checkpoint": str(checkpoint)}}
        write_summary(out, summary)
        print(f"{run_dir}: step {summary['step']}, energy {policy['energy/mean']:.4f} "
              f"(reference {references[key]['energy/mean']:.4f}), validity {policy['samples/validity']:.4f} "
              f"[{time.time() - start:.0f} s] -> {out}", flush=True)


if __name__ == "__main__":
    main()
