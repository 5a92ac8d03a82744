"""Plot docs/results/chembl_prior_fresh_rings.csv: validity and the unclosed-ring share of
molgpt-chembl's samples over the fresh-ring-label phase, beside the shipped and distilled weights.

    python benchmarks/plot_fresh_rings.py [--csv docs/results/chembl_prior_fresh_rings.csv] [--out docs/img/chembl_prior_fresh_rings.png]
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
    args = parser.parse_args(argv)
    frame = pd.read_csv(args.csv)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for column, ax in zip(("validity", "unclosed_ring"), axes):
        for variant, rows in frame[frame["start"].notna()].groupby("variant", sort=False):
            ax.plot(rows["step"], rows[column], marker="o", label=variant)
        references = frame[frame["start"].isna()].groupby("variant", sort=False)
        for (variant, rows), style in zip(references, ("--", "-.", ":")):
            ax.axhline(float(rows[column].iloc[0]), ls=style, color="grey", label=variant)
        ax.set_xlabel("training step (× 128 molecules)")
        ax.set_ylabel(f"{column.replace('_', ' ')} (fraction of samples)")
    axes[0].axhline(0.90, ls=":", color="red", label="issue 28 bar (validity)")
    axes[0].legend(fontsize=7)
    fig.suptitle("molgpt-chembl with fresh ring labels (2,000–3,000 samples per point, T = 1)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    return args.out


if __name__ == "__main__":
    print(main())
