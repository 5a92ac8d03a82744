"""Figures for runs and reports: one place that picks a headless backend, writes the PNG next to
the run's outputs, sends it to the loggers that take figures, and frees it.

Why shared: alignment histograms, Pareto fronts, protein campaigns and sweep plots are all written
on machines without a display (clusters, CI), all go to a PNG users open, and a figure left open
leaks memory over a long run.
"""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported lazily: plotting is
    optional at run time and matplotlib is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, loggers=(), tag: str | None = None, step: int | None = None,
                dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG (parent directories created), add it to every logger whose
    experiment has ``add_figure`` (TensorBoard) under ``tag``, and close it."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
        for logger in loggers:
            experiment = getattr(logger, "experiment", None)
            if tag and hasattr(experiment, "add_figure"):
                experiment.add_figure(tag, fig, global_step=step)
    finally:
        plt.close(fig)
    return path
