"""Where an online round's wall time goes: sampling, scoring, reference log-probs and the update.

    python benchmarks/round_profile.py --config configs/era/qed_online_cpu.yaml [--steps 20] [--warmup 3]
    python benchmarks/round_profile.py --config configs/irs/rdkit_tri_tiny.yaml --steps 12

Runs ``fit`` from the config for ``--steps`` optimiser steps (no checkpoints, no logger) with timers
around the module's sampler, its oracle call, and the log-probability passes (split by whether the
network is the frozen reference), and the wall time of each training batch (forward, backward and
optimiser step included). ``update`` is the batch time not spent making rounds (the module's
``_new_round``: sampling, scoring, reference and old-policy log-probs). Where the module scores
alongside the networks (the oracle in a thread; marked), those shares overlap and can add up to
more than the round.
The first ``--warmup`` batches are not counted.
Prints a Markdown row per config.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L  # noqa: E402

PATCHED_MODULES = ("lightning_modules.alignment", "lightning_modules.multi_objective")
SCORING_METHODS = ("_score", "energy_matrix")


class PhaseClock(L.Callback):
    """Sums wall time per phase over the counted batches."""

    def __init__(self, warmup: int):
        self.warmup, self.totals, self.batches = warmup, defaultdict(float), 0
        self._started = None
        self.module = None

    def counting(self) -> bool:
        return self._started is not None

    def add(self, phase: str, seconds: float) -> None:
        if self.counting():
            self.totals[phase] += seconds

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.module = pl_module
        self._started = time.perf_counter() if trainer.global_step >= self.warmup else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._started is not None:
            self.totals["batch"] += time.perf_counter() - self._started
            self.batches += 1
        self._started = None


def _timed(clock: PhaseClock, phase, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            name = phase(args) if callable(phase) else phase
            clock.add(name, time.perf_counter() - start)
    return wrapper


def instrument(clock: PhaseClock) -> None:
    import importlib

    def logprob_phase(args):
        import torch

        if args and args[0] is getattr(clock.module, "reference", None):
            return "reference"
        return "update_forward" if torch.is_grad_enabled() else "old_logprob"

    for name in PATCHED_MODULES:
        module = importlib.import_module(name)
        module.sample = _timed(clock, "sampling", module.sample)
        for fn in ("sequence_logprob", "scoring_logprob"):
            if hasattr(module, fn):
                setattr(module, fn, _timed(clock, logprob_phase, getattr(module, fn)))
        for cls in vars(module).values():
            if isinstance(cls, type):
                for method in (*SCORING_METHODS, "_new_round"):
                    if method in vars(cls):
                        phase = "round" if method == "_new_round" else "scoring"
                        setattr(cls, method, _timed(clock, phase, vars(cls)[method]))


def profile(config: list[str], steps: int, warmup: int, extra: list[str]) -> dict:
    from main import cli_main

    clock = PhaseClock(warmup)
    instrument(clock)
    args = [*[a for c in config for a in ("--config", c)], f"--trainer.max_steps={steps + warmup}",
            "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.limit_val_batches=0",
            "--trainer.num_sanity_val_steps=0", "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            "--overwrite_checkpoints=true", *extra]
    cli = cli_main(args, run=False)
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    t = clock.totals
    total = t["batch"]
    share = {k: t[k] / total for k in ("sampling", "scoring", "reference", "old_logprob")}
    # the phases of a round that run side by side (the oracle in a thread) add up to more than it
    overlap = t["sampling"] + t["scoring"] + t["reference"] + t["old_logprob"] > 1.02 * t["round"]
    return {"batches": clock.batches, "s_per_batch": total / max(clock.batches, 1), **share,
            "alongside": overlap, "update": (total - t["round"]) / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", required=True, help="config file(s), composed in order")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="more main.py arguments, e.g. --model.init_args.num_samples=128")
    args = parser.parse_args()
    row = profile(args.config, args.steps, args.warmup, args.extra)
    print("| config | batches | s/batch | sampling | scoring | reference log-probs | old policy log-probs | update |\n"
          "|---|---|---|---|---|---|---|---|")
    both = " (alongside)" if row["alongside"] else ""
    print(f"| {' + '.join(args.config)} | {row['batches']} | {row['s_per_batch']:.3f} | {row['sampling']:.0%} | "
          f"{row['scoring']:.0%}{both} | {row['reference']:.0%}{both} | {row['old_logprob']:.0%} | {row['update']:.0%} |")


if __name__ == "__main__":
    main()
