"""Rewarded Soups' front: at the end of training, merge the experts over a grid of weights,
sample and score each merge, and write the front (CSV + PNG + hypervolume).

For Rewarded Soups this *is* the method (experts trained independently, merged once). For
Iterative Rewarded Soups it traces the front around the final merge; for MORLHF (one policy)
it writes the single point, and a front comes from runs over a grid of scalarisations.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import lightning as L
import pandas as pd

from lightning_modules.pareto import hypervolume, plot_fronts


def simplex_grid(n: int, step: float) -> list[tuple[float, ...]]:
    """All weight vectors with n non-negative entries, multiples of ``step``, summing to 1
    (λ ∈ {0, step, …, 1} for two objectives)."""
    k = round(1 / step)
    if n < 1 or abs(k * step - 1) > 1e-9:
        raise ValueError(f"step must divide 1, got {step}")
    return [tuple(c / k for c in combo) for combo in itertools.product(range(k + 1), repeat=n) if sum(combo) == k]


class SoupFront(L.Callback):
    """Evaluate soups of the experts over a simplex grid when ``fit`` ends.

    Args:
        step: grid spacing of the merge weights (0.1 gives the paper's λ ∈ {0, 0.1, …, 1}).
        num_samples: samples scored per merge.
        reference: hypervolume reference point (energies); ``None`` skips the hypervolume.
        method: label written in the file (``irs``, ``rs``, ``morlhf``, …).
        dirpath: output directory (default: the trainer's log directory).
    """

    def __init__(self, step: float = 0.25, num_samples: int = 256, reference: list[float] | None = None,
                 method: str = "soup", dirpath: str | None = None):
        self.step, self.num_samples, self.reference = step, num_samples, reference
        self.method, self.dirpath = method, dirpath
        self.front: pd.DataFrame | None = None

    def on_fit_end(self, trainer, pl_module) -> None:
        n = pl_module.num_experts
        grid = simplex_grid(n, self.step) if n > 1 else [(1.0,)]
        rows = []
        for k, weights in enumerate(grid):
            stats = pl_module.evaluate(list(weights), n=self.num_samples, seed=k)
            rows.append({"method": self.method, **{f"w{i}": w for i, w in enumerate(weights)}, **stats})
        if not trainer.is_global_zero:
            return
        self.front = pd.DataFrame(rows)
        directory = Path(self.dirpath or trainer.log_dir or trainer.default_root_dir)
        directory.mkdir(parents=True, exist_ok=True)
        self.front.to_csv(directory / "front.csv", index=False)
        columns = [f"energy/{name}" for name in pl_module.names]
        points = self.front[columns].to_numpy()
        if len(columns) > 1:
            plot_fronts({self.method: points}, pl_module.names, directory / "front.png")
        if self.reference is not None:
            hv = hypervolume(points, self.reference)
            (directory / "hypervolume.txt").write_text(f"{hv}\n")
            for logger in trainer.loggers:
                logger.log_metrics({"front/hypervolume": hv}, step=trainer.global_step)
        print(f"front ({len(rows)} merges) written to {directory / 'front.csv'}")
