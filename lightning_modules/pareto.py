"""Pareto fronts of multi-objective runs: non-dominated filtering, hypervolume, plots, a report.

All objectives are energies (lower is better), the convention of ``moocore``, which computes the
hypervolume exactly (we do not hand-write it). The reference point must be worse than every
point of interest in every objective; points beyond it contribute nothing.

``python -m lightning_modules.pareto FRONT.csv [FRONT.csv …] --ref 0 5 3 --out report`` reads
front files written by :class:`callbacks.SoupFront` (one row per merge weight, one
``energy/<objective>`` column per objective, a ``method`` column), prints a hypervolume table
per method (mean ± std over runs/seeds) and writes one scatter plot of all fronts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from lightning_modules.plotting import pyplot, save_figure


def _points(points) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"points must be [n, objectives], got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points hold non-finite energies")
    return points


def nondominated(points) -> np.ndarray:
    """Boolean mask of the points no other point dominates (minimisation)."""
    import moocore

    points = _points(points)
    return np.asarray(moocore.is_nondominated(points), dtype=bool) if len(points) else np.zeros(0, bool)


def hypervolume(points, reference) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (minimisation)."""
    import moocore

    points, reference = _points(points), np.asarray(reference, dtype=np.float64)
    if reference.shape != (points.shape[1],):
        raise ValueError(f"reference point has {reference.size} coordinates for {points.shape[1]} objectives")
    inside = (points < reference).all(1)
    return float(moocore.hypervolume(points[inside], ref=reference)) if inside.any() else 0.0


def balance(rewards) -> dict[str, float]:
    """The average reward across objectives and how evenly it is spread, for one policy.

    ``rewards``: the policy's mean reward on each objective (higher is better). Returns
    ``average_reward`` = mean rᵢ, ``reward_sd`` = their population standard deviation,
    ``balance_cv`` = sd / |mean| (the coefficient of variation across objectives: 0 is perfectly
    balanced) and ``icv`` = mean / sd, its inverse (the Iterative RS paper's stability figure,
    ICV: larger is better). Both ratios need rewards on one positive scale (probabilities, say);
    with rewards of either sign (standardised ones) the mean can be near 0 and the ratios
    meaningless — read ``reward_sd`` then. A zero denominator gives ``inf``, not an error."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"rewards must be one mean per objective, got shape {r.shape}")
    mean, sd = float(r.mean()), float(r.std())
    return {"average_reward": mean, "reward_sd": sd,
            "balance_cv": sd / abs(mean) if mean else (0.0 if sd == 0 else float("inf")),
            "icv": mean / sd if sd else (float("inf") if mean > 0 else (float("-inf") if mean < 0 else float("nan")))}


def energy_columns(frame: pd.DataFrame) -> list[str]:
    columns = [c for c in frame.columns if c.startswith("energy/")]
    if not columns:
        raise ValueError("front file has no energy/<objective> columns")
    return columns


def plot_fronts(fronts: dict[str, np.ndarray], names: list[str], path: str | Path, title: str = "") -> Path:
    """Scatter of each method's points (non-dominated ones joined) on the first two objectives,
    plus every pair of objectives when there are three."""
    plt = pyplot()
    pairs = [(0, 1)] if len(names) < 3 else [(0, 1), (0, 2), (1, 2)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4), squeeze=False)
    for ax, (a, b) in zip(axes[0], pairs):
        for label, pts in fronts.items():
            pts = _points(pts)
            keep = nondominated(pts[:, [a, b]])
            line = ax.scatter(pts[:, a], pts[:, b], s=14, alpha=0.5, label=label)
            best = pts[keep][np.argsort(pts[keep][:, a])]
            ax.plot(best[:, a], best[:, b], color=line.get_facecolor()[0], alpha=0.9)
        ax.set_xlabel(f"{names[a]} (energy, lower is better)")
        ax.set_ylabel(f"{names[b]} (energy)")
    axes[0][0].legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def report(files: list[str], reference: list[float], out: str | None = None) -> pd.DataFrame:
    """Hypervolume per front file, and mean ± std per method."""
    rows, fronts, names = [], {}, None
    for file in files:
        frame = pd.read_csv(file)
        columns = energy_columns(frame)
        names = names or [c.split("/", 1)[1] for c in columns]
        method = str(frame["method"].iloc[0]) if "method" in frame else Path(file).stem
        points = frame[columns].to_numpy()
        rows.append({"method": method, "file": file, "points": len(points),
                     "hypervolume": hypervolume(points, reference)})
        fronts.setdefault(method, []).append(points)
    table = pd.DataFrame(rows)
    summary = table.groupby("method")["hypervolume"].agg(["mean", "std", "count"]).reset_index()
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        table.to_csv(Path(out) / "hypervolume_runs.csv", index=False)
        summary.to_csv(Path(out) / "hypervolume.csv", index=False)
        plot_fronts({m: np.concatenate(p) for m, p in fronts.items()}, names, Path(out) / "fronts.png")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="front CSV files (from callbacks.SoupFront)")
    parser.add_argument("--ref", nargs="+", type=float, required=True, help="reference point (energies)")
    parser.add_argument("--out", default=None, help="directory for the tables and fronts.png")
    args = parser.parse_args(argv)
    print(report(args.files, args.ref, args.out).to_string(index=False))


if __name__ == "__main__":
    main()
