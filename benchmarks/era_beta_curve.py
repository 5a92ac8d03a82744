"""Energy, property and validity against β' over seeds, from finished alignment runs.

Every alignment run writes ``summary.json`` (its before/after table) next to its histogram. This
collects those files — any mix of offline and online runs, ERA or DPO, several seeds — into one
table and one plot, so that "does the mean energy fall with β?" is answered over seeds rather
than from one run whose evaluation noise (±0.03 in mean energy on 1,000 samples at 5 % invalid)
is as large as the steps between neighbouring β:

    python benchmarks/era_beta_curve.py runs/era_online_clip/* \\
        --csv docs/results/era_online_clip_beta_seeds.csv --out docs/img/era_online_clip_beta_seeds.png

Each seed's reference row is its own (online runs evaluate the reference on seed-dependent
samples), so the plot shows the policy's numbers and each seed's reference as a dashed line.
``--summary summary_n10000_seed100.json`` reads the files that ``benchmarks/era_reevaluate.py``
writes instead: every run evaluated again on many samples with one shared evaluation seed, so
that what differs between runs is the training, not the evaluation.

Whether a number falls with β is also tested over seeds rather than read off the means: Page's L
test (``scipy.stats.page_trend_test``) takes each seed as a block and asks whether, within seeds,
the ranks of the energy follow the order of β'. Strictly falling seed means need every step to
beat the noise; a trend test asks only whether the order is there at all, and says with what
p-value. ``--rows OLD.csv`` adds the rows of an earlier ``--csv`` (a sweep whose run directories
are gone, continued with more seeds); a run in both is read from its directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METRICS = ["energy/mean", "energy/valid_mean", "samples/validity", "samples/uniqueness", "samples/intdiv1", "samples/kl_to_reference"]


def _number(value) -> float:
    """A summary number; missing or ``null`` (not finite when written) is NaN."""
    return float("nan") if value is None else float(value)


def load(run_dirs: list[Path], name: str = "summary.json", required: bool = True) -> pd.DataFrame:
    """One row per run with a summary file ``name``: β, γ, β', seed, and reference/policy numbers.
    With none, an error when ``required``, else an empty table."""
    rows = []
    for run_dir in run_dirs:
        path = run_dir / name
        if not path.is_file():
            continue
        summary = json.loads(path.read_text())
        objective = summary["objective"]
        beta, gamma = float(objective.get("beta", "nan")), float(objective.get("gamma", 0.0))
        prop = next((k for k in summary["policy"] if k.startswith("property/") and k.endswith("/mean")), None)
        row = {"run": run_dir.name, "method": objective["class"].rsplit(".", 1)[-1], "beta": beta, "gamma": gamma,
               "beta_prime": beta / (1 + gamma), "seed": summary["seed"], "step": summary["step"]}
        for key in ([prop] if prop else []) + METRICS:
            row[f"ref {key}"] = _number(summary["reference"].get(key))
            row[key] = _number(summary["policy"].get(key))
        rows.append(row)
    if not rows:
        if required:
            raise SystemExit(f"no {name} in the given run directories")
        return pd.DataFrame(columns=["run", "method", "gamma", "seed", "beta"])
    return pd.DataFrame(rows).sort_values(["method", "gamma", "seed", "beta"]).reset_index(drop=True)


def across_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error over seeds of each policy number, per (method, γ, β); ``seeds``
    counts the runs with a mean energy (other numbers may be missing from older summaries)."""
    numbers = [c for c in table.columns if c in METRICS or (c.startswith("property/") and c.endswith("/mean"))]
    keys = ["method", "gamma", "beta", "beta_prime"]
    grouped = table.groupby(keys)[numbers]
    mean, sem = grouped.mean(), grouped.sem()
    out = mean.join(sem.add_suffix(" sem")).join(table.groupby(keys)["energy/mean"].count().rename("seeds"))
    return out.reset_index()


def non_increasing(values: pd.Series) -> bool:
    """Non-increasing from each β to the next."""
    return bool((values.diff().dropna() <= 0).all())


def falls_with_beta(table: pd.DataFrame, key: str = "energy/mean") -> dict | None:
    """Page's L test that ``key`` falls as β' grows, each seed a block.

    Only seeds that ran every β' count (the test needs complete blocks); ``None`` when fewer than
    two such seeds or three β' values remain. ``pvalue`` is one-sided: small when, within seeds,
    larger β' tend to have lower ``key``."""
    from scipy.stats import page_trend_test

    wide = table.pivot_table(index="seed", columns="beta_prime", values=key).dropna()
    if len(wide) < 2 or wide.shape[1] < 3:
        return None
    # Page's alternative is "increasing along the columns": put the largest β' first.
    result = page_trend_test(wide.to_numpy()[:, ::-1])
    return {"key": key, "L": float(result.statistic), "pvalue": float(result.pvalue),
            "seeds": len(wide), "betas": wide.shape[1]}


def plot(table: pd.DataFrame, means: pd.DataFrame, out: Path) -> Path:
    from lightning_modules.plotting import pyplot, save_figure

    plt = pyplot()
    prop = next((c for c in table.columns if c.startswith("property/") and c.endswith("/mean")), None)
    # the energy of the valid molecules is the one β acts on when invalid samples have their own term
    valid_energy = ["energy/valid_mean"] if "energy/valid_mean" in table and table["energy/valid_mean"].notna().any() else []
    panels = ["energy/mean"] + valid_energy + ([prop] if prop else []) + ["samples/validity"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes, panels):
        for k, (seed, group) in enumerate(table.groupby("seed")):
            color = colors[k % len(colors)]
            ax.plot(group.beta_prime, group[key], "o-", lw=1, alpha=0.6, color=color, label=f"seed {seed}")
            ax.axhline(group[f"ref {key}"].iloc[0], color=color, ls="--", lw=0.8, alpha=0.6)
        ax.errorbar(means.beta_prime, means[key], yerr=means[f"{key} sem"].fillna(0), fmt="s-", lw=2.5,
                    color="black", label="mean over seeds (± s.e.)")
        ax.set(xscale="log", xlabel="β' = β/(1+γ)", ylabel=key, title=key)
    axes[0].plot([], [], "k--", lw=0.8, label="each seed's reference")
    axes[0].legend(fontsize=8)
    return save_figure(fig, out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run directories (with summary.json)")
    parser.add_argument("--summary", default="summary.json",
                        help="summary file name in each run (era_reevaluate.py writes summary_n{N}_seed{S}.json)")
    parser.add_argument("--csv", type=Path, help="write the per-run table here")
    parser.add_argument("--rows", type=Path, nargs="*", default=[],
                        help="per-run tables of an earlier --csv to include (runs whose directories are gone)")
    parser.add_argument("--out", type=Path, default=Path("runs/era_beta_curve.png"), help="the plot (PNG)")
    args = parser.parse_args(argv)
    table = load(args.runs, args.summary, required=not args.rows)
    if args.rows:
        earlier = pd.concat([pd.read_csv(path) for path in args.rows], ignore_index=True)
        earlier = earlier[~earlier.run.isin(table.run)]
        table = pd.concat([table, earlier], ignore_index=True).sort_values(
            ["method", "gamma", "seed", "beta"]).reset_index(drop=True)
    if table.method.nunique() > 1 or table.gamma.nunique() > 1:
        raise SystemExit(f"one method and one γ per curve; got {sorted(set(zip(table.method, table.gamma)))}")
    means = across_seeds(table)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False, float_format="%.4f")
    shown = ["beta", "beta_prime", "seeds", "energy/mean", "energy/mean sem", "energy/valid_mean"] + [
        c for c in means.columns if c.startswith("property/") and not c.endswith("sem")] + ["samples/validity"]
    print(means[[c for c in shown if c in means]].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"mean energy over seeds non-increasing in β: {non_increasing(means['energy/mean'])}")
    for seed, group in table.groupby("seed"):
        print(f"  seed {seed}: {non_increasing(group['energy/mean'])} ({' → '.join(f'{v:.3f}' for v in group['energy/mean'])})")
    for key in ("energy/mean", "energy/valid_mean"):
        test = falls_with_beta(table, key) if key in table and table[key].notna().any() else None
        if test is not None:
            print(f"{key} falls with β' (Page's L test, {test['seeds']} seeds × {test['betas']} β'): "
                  f"L = {test['L']:.0f}, one-sided p = {test['pvalue']:.2g}")
    print(f"plot: {plot(table, means, args.out)}")


if __name__ == "__main__":
    main()
