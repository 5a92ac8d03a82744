"""What an alignment run shows of itself: histograms, the before/after table and ``summary.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import numpy as np

from datamodules.reference_samples import describe
from lightning_modules.alignment import AlignmentBase, Evaluation, valid_mean
from lightning_modules.plotting import pyplot, save_figure


def _std_key(prop: str) -> str:
    """``property/qed/mean`` → ``property/qed/std``: the key of the spread in the logged numbers."""
    return prop.rsplit("/", 1)[0] + "/std"


def _finite_or_null(numbers: dict[str, float]) -> dict[str, float | None]:
    return {k: float(v) if math.isfinite(v) else None for k, v in numbers.items()}


def summary(module: AlignmentBase, reference: dict[str, float], last: dict[str, float],
            step: int | None = None) -> dict:
    """The before/after table as plain data, the schema of ``summary.json`` (also written by
    ``benchmarks/era_reevaluate.py``), so that sweeps over seeds and settings
    (``benchmarks/era_beta_curve.py``) read numbers rather than parse logs. Numbers that are not
    finite (no valid sample, say) become ``None``: strict JSON has no NaN."""
    step = int(last.get("step", module.global_step)) if step is None else int(step)
    return {"step": step, "seed": module.hparams.seed,
            "objective": describe(module.objective), "invalid_weight": module.invalid_term.weight if module.invalid_term else 0.0,
            "reference": _finite_or_null(reference),
            "policy": _finite_or_null({k: v for k, v in last.items() if k != "step"})}


def write_summary(path: Path, summary: dict) -> None:
    """A summary (:func:`summary`) as strict JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")


class AlignmentReport(L.Callback):
    """For an alignment module (``lightning_modules.alignment``): at every validation, a histogram
    per property of the reference's samples against the policy's (PNG, and to TensorBoard); at the
    end of ``fit``, the before/after table (printed) and ``summary.json``. Rank zero only.

    ``main.py`` adds one to every alignment run whose config names none.

    Args:
        dirpath: where the PNGs and ``summary.json`` go; default: the module's ``plot_dir``, else the
            trainer's log directory.
    """

    def __init__(self, dirpath: str | None = None):
        self.dirpath = dirpath
        #: "before": the reference's samples (``AlignmentBase.reference_evaluation``), from on_fit_start
        self.reference: Evaluation | None = None
        #: the first property's histogram, the last one written
        self.last_plot: Path | None = None

    def output_dir(self, trainer: L.Trainer, module: AlignmentBase) -> Path:
        return Path(self.dirpath or module.hparams.get("plot_dir") or trainer.log_dir or trainer.default_root_dir)

    def on_fit_start(self, trainer: L.Trainer, pl_module: AlignmentBase) -> None:
        if not isinstance(pl_module, AlignmentBase):
            raise TypeError(f"AlignmentReport reports on alignment modules, not {type(pl_module).__name__}")
        if trainer.is_global_zero:
            self.reference = pl_module.reference_evaluation()

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: AlignmentBase, *args) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.reference is None:
            return
        current = pl_module.last_evaluation.values
        names = [name for name in current if name in self.reference.values]
        for k, name in enumerate(names):
            ref, cur = self.reference.values[name], current[name]
            path = self._plot(trainer, pl_module, name, ref[np.isfinite(ref)], cur[np.isfinite(cur)])
            if k == 0:
                self.last_plot = path

    def _plot(self, trainer: L.Trainer, module: AlignmentBase, name: str, ref: np.ndarray, cur: np.ndarray) -> Path:
        fig, ax = pyplot().subplots(figsize=(6, 4))
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]) if cur.size else ref, bins=40)
        ax.hist(ref, bins=bins, alpha=0.5, density=True, label=f"reference (n={ref.size})")
        ax.hist(cur, bins=bins, alpha=0.5, density=True, label=f"policy, step {trainer.global_step} (n={cur.size})")
        ax.set_xlabel(name)
        ax.set_ylabel("density")
        ax.legend()
        return save_figure(fig, self.output_dir(trainer, module) / f"histogram_{name.replace('/', '_')}.png",
                           module.loggers, tag=f"histogram/{name}", step=trainer.global_step)

    def reference_row(self, prop: str) -> dict[str, float]:
        """The reference's side of the before/after table (printed and in ``summary.json``)."""
        values = next(iter(self.reference.values.values()))
        ref, energies = values[np.isfinite(values)], self.reference.energies
        return {prop: float(ref.mean()), _std_key(prop): float(ref.std()),
                "energy/mean": float(energies.mean()), "samples/kl_to_reference": 0.0,
                "energy/valid_mean": valid_mean(energies, self.reference.valid),
                **{k: float(v) for k, v in self.reference.quality.items()}}

    def on_fit_end(self, trainer: L.Trainer, pl_module: AlignmentBase) -> None:
        if not trainer.is_global_zero or self.reference is None or not pl_module.history:
            return
        last = pl_module.history[-1]
        prop = next((k for k in last if k.startswith("property/") and k.endswith("/mean")), "energy/mean")
        reference = self.reference_row(prop)
        path = self.output_dir(trainer, pl_module) / "summary.json"
        write_summary(path, summary(pl_module, reference, last))
        print(f"\n{'':28s}{'reference':>12s}{'policy':>12s}")
        for key in (prop, "energy/mean", "samples/validity", "samples/uniqueness", "samples/novelty",
                    "samples/intdiv1", "samples/kl_to_reference"):
            if key in last:
                before = f"{reference[key]:12.4f}" if key in reference else f"{'':>12s}"
                print(f"{key:28s}{before}{last[key]:12.4f}")
        std = reference[_std_key(prop)]
        print(f"reference std of {prop}: {std:.4f}; shift = {(last[prop] - reference[prop]) / max(std, 1e-12):+.2f} std")
        if self.last_plot:
            print(f"histogram: {self.last_plot}")
        print(f"summary: {path}")
