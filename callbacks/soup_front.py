"""Rewarded Soups' front: at the end of training, merge the experts over a grid of weights,
sample and score each merge, and write the front (CSV + PNG + hypervolume).

For Rewarded Soups this *is* the method (experts trained independently, merged once). For
MORLHF (one policy) it writes the single point, and a front comes from runs over a grid of
scalarisations. Iterative Rewarded Soups' output is its final merge ρ_T, one policy: its front
comes from IRS runs with different merge weights w, one run per w, like MORLHF's.

Soups of identical experts are one network: sampling it under 15 weight vectors gives 15 noisy
copies of one point, not a front (an IRS run whose last step is a merge leaves every expert
equal to ρ_T). So when the experts' relative spread max ‖θᵢ − θ₀‖/‖θ₀‖ is below
``identical_tol`` the callback writes that one policy's point with a warning
(``on_identical: single``) or raises (``on_identical: raise``); it never reports a multi-point
front from one network.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import lightning as L
import pandas as pd

from lightning_modules.pareto import hypervolume, plot_fronts

log = logging.getLogger(__name__)


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
        identical_tol: experts whose relative spread (``MultiObjectiveModule.expert_spread``) is at
            most this are one network (float32 rounding of a merge is ~1e-7; one Adam step at the
            IRS paper's lr moves a 3M-parameter GPT by ~1e-4).
        on_identical: ``single`` writes the one policy's point (weights = uniform) with a warning;
            ``raise`` stops with an error.
    """

    def __init__(self, step: float = 0.25, num_samples: int = 256, reference: list[float] | None = None,
                 method: str = "soup", dirpath: str | None = None, identical_tol: float = 1e-6,
                 on_identical: str = "single"):
        if on_identical not in ("single", "raise"):
            raise ValueError(f"on_identical must be 'single' or 'raise', got {on_identical!r}")
        self.step, self.num_samples, self.reference = step, num_samples, reference
        self.method, self.dirpath = method, dirpath
        self.identical_tol, self.on_identical = float(identical_tol), on_identical
        self.front: pd.DataFrame | None = None
        self.identical_experts = False

    def grid(self, pl_module) -> list[tuple[float, ...]]:
        """The soups to evaluate: the simplex grid, or the one policy when the experts are one network."""
        n = pl_module.num_experts
        if n == 1:
            return [(1.0,)]
        spread = pl_module.expert_spread()
        self.identical_experts = spread <= self.identical_tol
        if not self.identical_experts:
            return simplex_grid(n, self.step)
        message = (f"SoupFront ({self.method}): the {n} experts are one network (relative spread {spread:.2e} <= "
                   f"identical_tol {self.identical_tol:g}; an IRS run that ends on a merge leaves every expert "
                   "equal to its output ρ_T), so their soups are one policy and no front")
        if self.on_identical == "raise":
            raise RuntimeError(message + ". Trace an IRS front with one run per merge weight w instead.")
        log.warning("%s: writing its single point. For a front, run IRS once per merge weight w.", message)
        return [tuple([1.0 / n] * n)]

    def on_fit_end(self, trainer, pl_module) -> None:
        grid = self.grid(pl_module)
        rows = []
        for k, weights in enumerate(grid):
            stats = pl_module.evaluate(list(weights), n=self.num_samples, seed=k)
            rows.append({"method": self.method, **{f"w{i}": w for i, w in enumerate(weights)},
                         "identical_experts": self.identical_experts, **stats})
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
