"""Evaluate a multi-objective run's output policy every k steps: one CSV row per evaluation.

Why: fronts and final rewards alone cannot tell a method that learned a better trade-off from one
that simply moved farther from the reference, or spent more oracle calls. Each row carries the
policy's per-objective rewards *and* its KL to the reference, its oracle calls and optimiser
steps, so reward-vs-KL and reward-vs-budget curves can be drawn (``benchmarks/mo_protocol.py``).

The evaluated policy is each method's output at that step: IRS's merge Σ wᵢθᵢ with its merge
weights (ρ_t at a merge step; Algorithm 1's final merge otherwise), Rewarded Soups' soup at ``w``,
MORLHF's one policy (``w`` = its scalarisation). The evaluation samples come from a generator
seeded by the run's ``seed`` and the step only, so two methods run with the same seed draw the
same random stream (step 0, the reference policy, gives identical rows).

Rows are appended to ``path`` as they are made (one write per evaluation; a run cut short keeps
what it had). Columns: ``task, method, w, seed, step, optimizer_steps, expert_updates,
oracle_calls, reward/<obj>, raw/<obj>, energy/<obj>, average_reward, reward_sd, balance_cv, icv,
samples/validity, samples/uniqueness, samples/intdiv1 (SMILES), kl, n_samples, precision,
wall_s``.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import lightning as L

from callbacks.merging import WeightMergingCallback


#: the protocol's update rule: runs with another one carry its name in their label (``irs_era``)
PROTOCOL_UPDATE = "ppo"


def method_of(trainer, pl_module) -> str:
    """``irs`` with a merging callback, ``supervised`` for an update that learns from the
    reference's samples (``SupervisedTopK``), ``morlhf`` for a scalarised policy, ``rs`` otherwise;
    with an update rule other than the protocol's PPO, ``_<its name>`` is appended (``irs_era``,
    ``morlhf_rloo``), so that two update rules of one method never share rows."""
    update = getattr(pl_module, "update", None)
    if getattr(update, "sample_from", "policy") == "reference":
        return "supervised"
    if any(isinstance(c, WeightMergingCallback) for c in trainer.callbacks):
        base = "irs"
    else:
        base = "morlhf" if pl_module.hparams.scalarization is not None else "rs"
    name = getattr(update, "name", PROTOCOL_UPDATE)
    return base if name == PROTOCOL_UPDATE else f"{base}_{name}"


def evaluated_weights(trainer, pl_module) -> tuple[list[float], list[float]]:
    """(soup weights to evaluate, the method's weight vector w for the row's label)."""
    n = pl_module.num_experts
    uniform = [1.0 / n] * n
    c = pl_module.hparams.scalarization
    if c is not None:
        return [1.0], [x / sum(c) for x in c]
    merging = next((cb for cb in trainer.callbacks if isinstance(cb, WeightMergingCallback)), None)
    if merging is not None:
        weights = merging.last_weights or merging.weights or uniform
    else:
        weights = pl_module.hparams.eval_weights or uniform
    total = sum(weights)
    weights = [x / total for x in weights]
    return weights, weights


class PolicyEvaluation(L.Callback):
    """Sample and score the run's output policy at step 0, every ``every_n_steps`` and at the end.

    Args:
        every_n_steps: k, optimiser steps between evaluations.
        num_samples: samples per evaluation.
        task: the task's name written in every row (e.g. ``qm9_tri``).
        method: ``irs``/``rs``/``morlhf``/…; ``None`` infers it (see :func:`method_of`).
        path: the CSV file (default ``<default_root_dir>/evals.csv``); rows are appended.
        at_start: also evaluate before the first step (the reference policy, step 0).
    """

    def __init__(self, every_n_steps: int = 20, num_samples: int = 256, task: str = "", method: str | None = None,
                 path: str | None = None, at_start: bool = True):
        if every_n_steps < 1 or num_samples < 2:
            raise ValueError(f"every_n_steps must be >= 1 and num_samples >= 2, got {every_n_steps}, {num_samples}")
        self.every_n_steps, self.num_samples = int(every_n_steps), int(num_samples)
        self.task, self.method, self.path, self.at_start = task, method, path, at_start
        self.rows: list[dict] = []
        self._last_step: int | None = None
        self._started = time.monotonic()
        self._elapsed_at_restore = 0.0  # training seconds before the checkpoint a run resumed from
        self._resumed = False  # restored from a checkpoint: the evaluations file is this run's own

    def file(self, trainer) -> Path:
        return Path(self.path or Path(trainer.default_root_dir) / "evals.csv")

    def state_dict(self) -> dict:
        """The training time so far, so that ``wall_s`` goes on from it after a resume."""
        return {"elapsed_s": time.monotonic() - self._started}

    def load_state_dict(self, state: dict) -> None:
        self._elapsed_at_restore = float(state.get("elapsed_s", 0.0))
        self._resumed = True

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = time.monotonic() - self._elapsed_at_restore
        if self.at_start and trainer.global_step == 0:
            self.evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every_n_steps == 0 and step != self._last_step:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step != self._last_step:
            self.evaluate(trainer, pl_module)

    def evaluate(self, trainer, pl_module) -> dict:
        step = int(trainer.global_step)
        self._last_step = step
        weights, label = evaluated_weights(trainer, pl_module)
        was_training = pl_module.training
        stats = pl_module.evaluate(weights, n=self.num_samples, seed=2_000_000 + step, detailed=True)
        pl_module.train(was_training)
        row = {"task": self.task, "method": self.method or method_of(trainer, pl_module),
               "w": "/".join(f"{x:.4g}" for x in label), "seed": int(pl_module.hparams.seed), "step": step,
               "optimizer_steps": step, "expert_updates": int(pl_module.expert_updates),
               "oracle_calls": int(pl_module.oracle_calls), **stats,
               "precision": str(trainer.precision), "wall_s": round(time.monotonic() - self._started, 1)}
        self.rows.append(row)
        if trainer.is_global_zero:
            self._append(self.file(trainer), row, widen=self._resumed)
        for logger in trainer.loggers:
            logger.log_metrics({f"eval/{k}": v for k, v in row.items() if isinstance(v, float)}, step=step)
        return row

    @staticmethod
    def _append(path: Path, row: dict, widen: bool = False) -> None:
        """Append one row; a file whose header differs is an error naming it (never mixed columns).

        With ``widen`` (a run resumed from its checkpoint, so the file is its own) a file whose
        columns are a subset of the row's — an evaluation metric added since the run began — is
        rewritten with the new columns, empty in its older rows, and the row appended."""
        path.parent.mkdir(parents=True, exist_ok=True)
        exists = path.is_file() and path.stat().st_size > 0
        if exists:
            with path.open(newline="") as f:
                header = next(csv.reader(f), [])
            if header != list(row) and widen and set(header) < set(row):
                with path.open(newline="") as f:
                    old_rows = list(csv.DictReader(f))
                tmp = path.with_name(path.name + ".tmp")
                with tmp.open("w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=list(row))
                    writer.writeheader()
                    writer.writerows(old_rows)
                os.replace(tmp, path)
                header = list(row)
            if header != list(row):
                raise ValueError(f"{path} holds evaluations with other columns ({len(header)} vs {len(row)}); "
                                 "give this run its own path or move the old file away")
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if not exists:
                writer.writeheader()
            writer.writerow(row)
