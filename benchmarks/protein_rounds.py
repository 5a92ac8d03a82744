"""Directed-evolution benchmark: methods × seeds × landscapes, same measurement budget.

    python benchmarks/protein_rounds.py --landscapes GB1 TrpB3A TrpB3D TrpB3E TrpB3I \\
        --methods era dpo random reference --seeds 0 1 2 3 4 --out runs/protein_bench

Each run is one :class:`lightning_modules.directed_evolution.DirectedEvolution` campaign
(round 0 from the reference, then ``rounds`` rounds of B proposals). Finished runs are appended
to ``<out>/runs.jsonl`` as they complete, so an interrupted sweep continues where it stopped and
``--report`` rebuilds the table from what is there. Writes ``<out>/results.md`` (normalised best
fitness after the last round and top-1 % fraction found: mean ± standard deviation over seeds,
with min–max) and ``<out>/best_so_far_<landscape>.png``.

Run it with ``OMP_NUM_THREADS=1`` on a shared CPU: the models are tiny and threads only contend.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_modules.directed_evolution import plot_best_so_far, run_campaign  # noqa: E402
from lightning_modules.pair_losses import DPO, ERA  # noqa: E402
from networks.architectures import ESM  # noqa: E402
from oracles.fitness_table import GB1_SITES, FitnessTable  # noqa: E402

PARENTS = {"GB1": ("GB1.fasta", GB1_SITES, False), "DHFR": ("DHFR.fasta", None, True),
           "ParD2": ("ParD2.fasta", None, False), "ParD3": ("ParD3.fasta", None, False)}


def landscape_oracle(name: str) -> FitnessTable:
    parent, sites, translate = PARENTS.get(name, ("TrpB.fasta", None, False))
    return FitnessTable(name, parent, sites=sites, translate_parent=translate)


def read_runs(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def report(runs: list[dict], out: Path, methods: list[str] | None = None) -> str:
    landscapes = list(dict.fromkeys(r["landscape"] for r in runs))
    methods = methods or list(dict.fromkeys(r["method"] for r in runs))
    lines = ["| landscape | method | seeds | best fitness / max (mean ± sd) | min–max | top-1 % found | "
             "last-round mean fitness / max | time per run (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for landscape in landscapes:
        grouped = {}
        for method in methods:
            chosen = [r for r in runs if r["landscape"] == landscape and r["method"] == method]
            if not chosen:
                continue
            grouped[method] = [r["history"] for r in chosen]
            best = np.array([r["history"][-1]["round/best_normalised"] for r in chosen])
            top = np.array([r["history"][-1]["round/top1_fraction"] for r in chosen])
            last = np.array([r["history"][-1]["round/mean_fitness"] / r["history"][-1]["round/best_fitness"]
                             * r["history"][-1]["round/best_normalised"] for r in chosen])
            secs = np.array([r["seconds"] for r in chosen])
            lines.append(f"| {landscape} | {method} | {len(chosen)} | {best.mean():.3f} ± {best.std():.3f} | "
                         f"{best.min():.3f}–{best.max():.3f} | {top.mean():.3f} ± {top.std():.3f} | "
                         f"{last.mean():.3f} ± {last.std():.3f} | {secs.mean():.0f} |")
        plot_best_so_far(grouped, out / f"best_so_far_{landscape}.png", title=landscape)
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n")
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--landscapes", nargs="+", default=["GB1", "TrpB3A", "TrpB3D", "TrpB3E", "TrpB3I"])
    parser.add_argument("--methods", nargs="+", default=["era", "dpo", "random", "reference"],
                        choices=["era", "dpo", "random", "reference"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants-per-round", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps-per-round", type=int, default=30)
    parser.add_argument("--variants-per-step", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--context", type=int, default=8, help="parent residues kept around the sites; -1: all")
    parser.add_argument("--era-beta", type=float, default=10.0)
    parser.add_argument("--era-gamma", type=float, default=0.0)
    parser.add_argument("--dpo-beta", type=float, default=1.0)
    parser.add_argument("--out", default="runs/protein_bench")
    parser.add_argument("--report", action="store_true", help="only rebuild the table and plots")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "runs.jsonl"
    runs = read_runs(path)
    if not args.report:
        done = {(r["landscape"], r["method"], r["seed"]) for r in runs}
        settings = dict(variants_per_round=args.variants_per_round, rounds=args.rounds,
                        steps_per_round=args.steps_per_round, variants_per_step=args.variants_per_step,
                        lr=args.lr, context=None if args.context < 0 else args.context)
        for landscape in args.landscapes:
            oracle = landscape_oracle(landscape)
            for seed in args.seeds:
                for method in args.methods:
                    if (landscape, method, seed) in done:
                        continue
                    objective = {"era": ERA(args.era_beta, args.era_gamma), "dpo": DPO(args.dpo_beta)}.get(method)
                    start = time.time()
                    history = run_campaign(oracle, "policy" if objective else method, objective, seed=seed,
                                           policy=ESM(), **settings)
                    record = {"landscape": landscape, "method": method, "seed": seed,
                              "seconds": time.time() - start, "settings": settings, "history": history,
                              "objective": vars(objective) if objective else None}
                    with open(path, "a") as handle:
                        handle.write(json.dumps(record) + "\n")
                    runs.append(record)
                    print(f"{landscape:7s} {method:9s} seed {seed}: best/max "
                          f"{[round(h['round/best_normalised'], 3) for h in history]}  "
                          f"{record['seconds']:.0f}s", flush=True)
    print(report(runs, out, args.methods))


if __name__ == "__main__":
    main()
