"""β × γ sweep of ERA, with DPO on the same samples, from one alignment config.

Why a script and not a config: LightningCLI runs one training; a sweep is many of them sharing
one offline sample set. Each point is a `main.py fit` subprocess (a crash in one point does not
end the sweep; a point whose results exist is skipped, so an interrupted sweep resumes), and the
last validation of each run is collected into a table and a plot:

- mean energy against β at fixed γ (ERA's β sets how far the distribution moves),
- KL(π‖π_ref) against γ at fixed β (γ pulls the policy back to the reference),
- diversity (IntDiv1) against mean energy for ERA and DPO (matched-energy comparison).

    python benchmarks/era_sweep.py --config configs/era/sweep_qed_cpu.yaml \\
        --beta 2 5 10 20 40 --gamma 0 --extra-gamma 10:1 10:4 --dpo-beta 0.1 0.5 --out runs/era_sweep_qed
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
COLUMNS = ["energy/mean", "samples/validity", "samples/uniqueness", "samples/intdiv1", "samples/kl_to_reference"]


def points(args) -> list[dict]:
    """(name, objective) for every run: the β × γ grid, extra (β, γ) pairs, DPO's β values."""
    grid = [(b, g) for g in args.gamma for b in args.beta]
    grid += [tuple(float(x) for x in pair.split(":")) for pair in args.extra_gamma]
    runs = [{"method": "ERA", "beta": b, "gamma": g, "name": f"era_b{b:g}_g{g:g}",
             "objective": {"class_path": "lightning_modules.pair_losses.ERA", "init_args": {"beta": b, "gamma": g}}}
            for b, g in dict.fromkeys(grid)]
    runs += [{"method": "DPO", "beta": b, "gamma": float("nan"), "name": f"dpo_b{b:g}",
              "objective": {"class_path": "lightning_modules.pair_losses.DPO", "init_args": {"beta": b}}}
             for b in args.dpo_beta]
    return runs


def validations(run_dir: Path, column: str = "energy/mean") -> pd.DataFrame | None:
    """Every validation row of one run's CSVLogger metrics (rows where ``column`` was logged);
    ``None`` when the run has no metrics or never logged ``column``."""
    files = sorted(run_dir.glob("csv/version_*/metrics.csv"))
    if not files:
        return None
    frame = pd.read_csv(files[-1])
    return frame.dropna(subset=[column]) if column in frame else None


def last_validation(run_dir: Path) -> dict[str, float] | None:
    frame = validations(run_dir)
    if frame is None:
        return None
    row = frame.iloc[-1]
    return {k: float(row[k]) for k in frame.columns if k.startswith(("energy/", "samples/", "property/"))} | {
        "step": int(row["step"])}


def run_point(point: dict, args, out: Path) -> dict[str, float] | None:
    run_dir = out / point["name"]
    done = last_validation(run_dir)
    if done is not None:
        return done
    logger = [{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(run_dir), "name": "csv"}}]
    command = [sys.executable, str(ROOT / "main.py"), "fit", "--config", args.config,
               "--model.init_args.objective", json.dumps(point["objective"]),
               "--model.init_args.dataset_path", str(out / "offline_samples.parquet"),
               "--model.init_args.plot_dir", str(run_dir), "--trainer.default_root_dir", str(run_dir),
               "--trainer.logger", json.dumps(logger), *args.overrides]
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(run_dir / "log.txt", "w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=os.getcwd())
    print(f"{point['name']}: exit {code} in {time.time() - start:.0f} s (log: {run_dir / 'log.txt'})", flush=True)
    return last_validation(run_dir) if code == 0 else None


def reference_row(out: Path) -> dict[str, float]:
    """The reference model's numbers, from the shared offline samples."""
    from lightning_modules.metrics import sample_quality

    frame = pd.read_parquet(out / "offline_samples.parquet")
    row = {"method": "reference", "name": "reference", "energy/mean": float(frame["energy"].mean()),
           "samples/kl_to_reference": 0.0, **sample_quality(list(frame["sequence"]), "smiles")}
    for column in (c for c in frame.columns if c.startswith("value_")):
        row[f"property/{column[6:]}/mean"] = float(frame.loc[frame["valid"], column].mean())
    return row


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub table (pandas' own needs the optional tabulate package)."""
    def cell(value) -> str:  # a missing value (DPO's γ, the reference's β) is an empty cell
        if isinstance(value, float):
            return "" if value != value else f"{value:.4g}"
        return str(value)
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def plot(table: pd.DataFrame, out: Path) -> Path:
    from lightning_modules.plotting import pyplot, save_figure

    plt = pyplot()
    era, dpo = table[table.method == "ERA"], table[table.method == "DPO"]
    ref = table[table.method == "reference"].iloc[0]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for gamma, group in era.groupby("gamma"):
        group = group.sort_values("beta")
        if len(group) > 1:
            axes[0].plot(group.beta, group["energy/mean"], "o-", label=f"ERA γ={gamma:g}")
    axes[0].axhline(ref["energy/mean"], color="gray", ls="--", label="reference")
    axes[0].set(xscale="log", xlabel="β", ylabel="mean energy (policy samples)", title="energy vs β")
    for beta, group in era.groupby("beta"):
        group = group.sort_values("gamma")
        if len(group) > 1:
            axes[1].plot(group.gamma, group["samples/kl_to_reference"], "o-", label=f"ERA β={beta:g}")
    axes[1].set(xlabel="γ", ylabel="log π − log π_ref (mean over samples)", title="distance to reference vs γ")
    axes[2].scatter(era["energy/mean"], era["samples/intdiv1"], label="ERA")
    axes[2].scatter(dpo["energy/mean"], dpo["samples/intdiv1"], marker="s", label="DPO")
    axes[2].scatter([ref["energy/mean"]], [ref["samples/intdiv1"]], marker="*", s=150, color="gray", label="reference")
    axes[2].set(xlabel="mean energy", ylabel="IntDiv1", title="diversity vs energy")
    for ax in axes:
        ax.legend(fontsize=8)
    return save_figure(fig, out / "sweep.png")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--beta", type=float, nargs="*", default=[])
    parser.add_argument("--gamma", type=float, nargs="*", default=[0.0])
    parser.add_argument("--extra-gamma", nargs="*", default=[], metavar="BETA:GAMMA")
    parser.add_argument("--dpo-beta", type=float, nargs="*", default=[])
    parser.add_argument("--out", default="runs/era_sweep")
    parser.add_argument("overrides", nargs="*", help="more main.py arguments, after --")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for point in points(args):
        result = run_point(point, args, out)
        if result is None:
            print(f"{point['name']}: no result", flush=True)
            continue
        rows.append({k: v for k, v in point.items() if k != "objective"} | result)
    if not rows:
        raise SystemExit("no run produced results")
    table = pd.DataFrame([reference_row(out), *rows])
    table.to_csv(out / "results.csv", index=False)
    columns = ["name", "method", "beta", "gamma", *[c for c in table.columns if c.startswith("property/") and c.endswith("/mean")], *COLUMNS]
    (out / "results.md").write_text(markdown(table[[c for c in columns if c in table]]))
    print((out / "results.md").read_text())
    print(f"plot: {plot(table, out)}")


if __name__ == "__main__":
    main()
