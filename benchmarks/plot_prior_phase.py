"""Plot a molgpt-chembl training-phase study (docs/results/chembl_prior_*.csv): validity and one
other column of the samples over each variant's steps (rows with a ``start``), beside reference
rows (no ``start``: the shipped weights, …) as horizontal lines.

    python benchmarks/plot_prior_phase.py   # the fresh-ring-label study (its defaults)
    python benchmarks/plot_prior_phase.py --csv docs/results/chembl_prior_randomized.csv \
        --out docs/img/chembl_prior_randomized.png --right fcd --title "…"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=ROOT / "docs/results/chembl_prior_fresh_rings.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/img/chembl_prior_fresh_rings.png")
    parser.add_argument("--right", default="unclosed_ring", help="the right panel's column")
    parser.add_argument("--title", default="molgpt-chembl with fresh ring labels (2,000–3,000 samples per point, T = 1)")
    args = parser.parse_args(argv)
    frame = pd.read_csv(args.csv)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for column, ax in zip(("validity", args.right), axes):
        for variant, rows in frame[frame["start"].notna()].groupby("variant", sort=False):
            rows = rows[rows[column].notna()]
            ax.plot(rows["step"], rows[column], marker="o", label=variant)
        references = frame[frame["start"].isna()].groupby("variant", sort=False)
        for (variant, rows), style in zip(references, ("--", "-.", ":")):
            ax.axhline(float(rows[column].iloc[0]), ls=style, color="grey", label=variant)
        ax.set_xlabel("training step (× 128 molecules)")
        ax.set_ylabel(column.replace("_", " ") + (" (fraction of samples)" if column != "fcd" else " to held-out ChEMBL"))
    axes[0].axhline(0.90, ls=":", color="red", label="issue 28 bar (validity)")
    if args.right == "fcd":
        axes[1].axhline(1.0, ls=":", color="red", label="issue 28 bar (FCD)")
        axes[1].legend(fontsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    return args.out


if __name__ == "__main__":
    print(main())
