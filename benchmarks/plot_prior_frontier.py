"""Plot issue 28's prior frontier (benchmarks/prior_frontier.sh's CSV): each candidate's validity
against its FCD to held-out ChEMBL, one point per (weights, temperature, top-k), the temperatures
of one set of weights joined by a line, and the bar's corner (validity ≥ 0.90, FCD ≤ 1.0) shaded.

    python benchmarks/plot_prior_frontier.py --csv docs/results/chembl_prior_frontier.csv \
        --out docs/img/chembl_prior_frontier.png
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
    parser.add_argument("--csv", type=Path, default=ROOT / "docs/results/chembl_prior_frontier.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/img/chembl_prior_frontier.png")
    parser.add_argument("--validity", type=float, default=0.90, help="the bar's validity (at least)")
    parser.add_argument("--fcd", type=float, default=1.0, help="the bar's FCD (at most)")
    args = parser.parse_args(argv)
    frame = pd.read_csv(args.csv)
    missing = {"label", "weights_sha256", "temperature", "top_k", "validity", "fcd"} - set(frame.columns)
    if missing:
        raise SystemExit(f"{args.csv}: no column(s) {sorted(missing)}: not a sample_quality.py --csv file")
    frame = frame[frame["fcd"].notna()]
    fig, ax = plt.subplots(figsize=(10, 5.5))
    x_high = max(1.0, frame["validity"].max() + 0.01)
    y_low = max(0.0, min(frame["fcd"].min(), args.fcd) - 0.15)
    ax.fill_between([args.validity, x_high], y_low, args.fcd, color="tab:green", alpha=0.15,
                    label=f"the bar: validity ≥ {args.validity:g}, FCD ≤ {args.fcd:g}")
    # one line per set of weights over its temperatures (top-k rows are points of their own)
    plain = frame[frame["top_k"].astype(str).eq("none")]
    for digest, rows in plain.groupby("weights_sha256", sort=False):
        rows = rows.sort_values("temperature")
        name = rows.loc[rows["temperature"].sub(1).abs().idxmin(), "label"]
        line, = ax.plot(rows["validity"], rows["fcd"], marker="o", label=f"{name} ({digest[:8]})")
        for _, row in rows.iterrows():
            if row["temperature"] != 1:
                ax.annotate(f"T {row['temperature']:g}", (row["validity"], row["fcd"]), fontsize=7,
                            xytext=(4, 3), textcoords="offset points", color=line.get_color())
    for _, row in frame[~frame.index.isin(plain.index)].iterrows():
        ax.plot(row["validity"], row["fcd"], marker="s", ls="none", color="grey")
        ax.annotate(f"{row['label']}", (row["validity"], row["fcd"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points", color="grey")
    ax.set_xlim(right=x_high)
    ax.set_ylim(bottom=y_low)
    ax.set_xlabel("validity (10,000 samples, no top-k unless marked)")
    ax.set_ylabel("FCD to held-out ChEMBL (10,000)")
    ax.set_title("molgpt-chembl candidates: validity against FCD (lower right is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=130)
    plt.close(fig)
    return args.out


if __name__ == "__main__":
    print(main())
