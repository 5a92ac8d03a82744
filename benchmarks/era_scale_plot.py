"""One figure from several `era_sweep.py` outputs: how offline ERA scales with the size of its
offline set, and where ERA and DPO sit in diversity against the property they optimise.

Why a separate script: each sweep plots its own points (`sweep.png`), but the questions "does a
larger offline set help?" and "at matched property, which method keeps more diversity?" compare
runs from different sweeps, and DPO's whole validation trajectory rather than its last point.

    python benchmarks/era_scale_plot.py --scale runs/era_qed_5k_fwd runs/era_qed_10k_fwd runs/era_qed_20k_fwd \\
        --era runs/era_qed_5k_rev --dpo runs/era_qed_5k_dpo --out docs/img/era_qed_scale_cpu.png

Left: property shift (policy − its own reference) and validity against the number of reference
samples, for the ERA runs of the ``--scale`` sweeps. Right: IntDiv1 against the property for every
ERA run given and each validation of the DPO runs, with the references.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from era_sweep import validations  # noqa: E402  (the sweep's own reader of its runs' metrics)


def property_column(frame: pd.DataFrame) -> str:
    """The first property mean the runs logged (e.g. ``property/qed/mean``); the energy otherwise."""
    return next((c for c in frame.columns if c.startswith("property/") and c.endswith("/mean")), "energy/mean")


def sweep_table(directory: Path) -> pd.DataFrame:
    """A sweep's results.csv with the number of offline samples it used."""
    table = pd.read_csv(directory / "results.csv")
    table["num_samples"] = len(pd.read_parquet(directory / "offline_samples.parquet", columns=["energy"]))
    table["sweep"] = directory.name
    return table


def trajectory(run_dir: Path, column: str) -> pd.DataFrame:
    """Every validation of one run (its CSVLogger metrics)."""
    frame = validations(run_dir, column)
    if frame is None:
        raise FileNotFoundError(f"no csv/version_*/metrics.csv with {column!r} under {run_dir}")
    return frame


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", nargs="+", type=Path, required=True, help="sweeps that differ in offline set size")
    parser.add_argument("--era", nargs="*", type=Path, default=[], help="more ERA sweeps for the diversity panel")
    parser.add_argument("--dpo", nargs="*", type=Path, default=[], help="sweeps whose DPO runs are drawn step by step")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from lightning_modules.plotting import pyplot, save_figure

    scale = pd.concat([sweep_table(d) for d in args.scale], ignore_index=True)
    prop = property_column(scale)
    refs = scale[scale.method == "reference"].set_index("sweep")
    era = scale[scale.method == "ERA"].copy()
    era["shift"] = era[prop].to_numpy() - refs.loc[era["sweep"], prop].to_numpy()
    era = era.sort_values("num_samples")

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.plot(era.num_samples, era["shift"], "o-", color="C0", label=f"{prop} shift")
    left.set(xscale="log", xlabel="reference samples in the offline set", ylabel=f"{prop} shift vs reference")
    twin = left.twinx()
    twin.plot(era.num_samples, era["samples/validity"], "s--", color="C1", label="validity")
    twin.set(ylabel="validity", ylim=(min(0.85, era["samples/validity"].min() - 0.01), 1.0))
    left.legend(loc="upper left", fontsize=8)
    twin.legend(loc="lower right", fontsize=8)
    left.set_title("offline ERA: larger offline set, steps scaled with it")

    others = [sweep_table(d) for d in args.era]
    right.scatter(era[prop], era["samples/intdiv1"], marker="o", label="ERA (--scale sweeps)")
    for table, marker in zip(others, "^vD<>"):
        rows = table[table.method == "ERA"]
        right.scatter(rows[prop], rows["samples/intdiv1"], marker=marker, label=f"ERA ({table.sweep.iloc[0]})")
    for directory in args.dpo:
        for name in sweep_table(directory).query("method == 'DPO'").name:
            steps = trajectory(directory / name, prop)
            right.plot(steps[prop], steps["samples/intdiv1"], "s-", color="C3", label=f"DPO {name}, every validation")
    references = pd.concat([t[t.method == "reference"] for t in [scale, *others]])
    right.scatter(references[prop], references["samples/intdiv1"], marker="*", s=150, color="gray", label="references")
    right.set(xlabel=prop, ylabel="IntDiv1", title="diversity against the property")
    right.legend(fontsize=7)
    return save_figure(fig, args.out)


if __name__ == "__main__":
    print(main())
