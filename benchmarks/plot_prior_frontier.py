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
    parser.add_argument("--xmin", type=float, default=0.8,
                        help="validity axis from here; rows below it are named in a note instead")
    args = parser.parse_args(argv)
    frame = pd.read_csv(args.csv)
    missing = {"label", "weights_sha256", "temperature", "top_k", "validity", "fcd"} - set(frame.columns)
    if missing:
        raise SystemExit(f"{args.csv}: no column(s) {sorted(missing)}: not a sample_quality.py --csv file")
    frame = frame[frame["fcd"].notna()]
    off = frame[frame["validity"] < args.xmin]
    frame = frame[frame["validity"] >= args.xmin]
    fig, ax = plt.subplots(figsize=(10, 5.5))
    x_high = max(1.0, frame["validity"].max() + 0.01)
    y_low = max(0.0, min(frame["fcd"].min(), args.fcd) - 0.15)
    ax.fill_between([args.validity, x_high], y_low, args.fcd, color="tab:green", alpha=0.15,
                    label=f"the bar: validity ≥ {args.validity:g}, FCD ≤ {args.fcd:g}")
    # one line per set of weights over its temperatures (top-k rows are points of their own);
    # several draws at one temperature (other sampling seeds): their mean, ± 1 s.d. as bars
    plain = frame[frame["top_k"].astype(str).eq("none")]
    for digest, rows in plain.groupby("weights_sha256", sort=False):
        name = rows.loc[rows["temperature"].sub(1).abs().idxmin(), "label"]
        points = rows.groupby("temperature")[["validity", "fcd"]].agg(["mean", "std", "count"])
        x, y = points[("validity", "mean")], points[("fcd", "mean")]
        draws = int(points[("fcd", "count")].max())
        label = f"{name} ({digest[:8]})" + (f", {draws} draws at T 1" if draws > 1 else "")
        line, = ax.plot(x, y, marker="o", label=label)
        if draws > 1:
            ax.errorbar(x, y, xerr=points[("validity", "std")].fillna(0), yerr=points[("fcd", "std")].fillna(0),
                        ls="none", color=line.get_color(), capsize=3)
        for temperature in points.index:
            if temperature != 1:
                ax.annotate(f"T {temperature:g}", (x[temperature], y[temperature]), fontsize=7,
                            xytext=(4, 3), textcoords="offset points", color=line.get_color())
    for _, row in frame[~frame.index.isin(plain.index)].iterrows():
        ax.plot(row["validity"], row["fcd"], marker="s", ls="none", color="grey")
        ax.annotate(f"{row['label']}", (row["validity"], row["fcd"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points", color="grey")
    ax.set_xlim(args.xmin, x_high)
    if len(off):
        note = "; ".join(f"{r['label']}: {r['validity']:.3f}, FCD {r['fcd']:.2f}" for _, r in off.iterrows())
        ax.text(0.01, 0.01, f"off the axis: {note}", transform=ax.transAxes, fontsize=7, color="grey")
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
