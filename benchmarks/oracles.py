"""Molecules per second for each oracle: cold and warm cache, 1 … N worker processes.

    python benchmarks/oracles.py [--n 4000] [--workers 1 2]

Molecules: the first N SMILES of MOSES test (real molecules; generated samples score alike).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.sources import moses_path, read_records  # noqa: E402
from oracles import rdkit_properties as P  # noqa: E402
from oracles.tdc_forest import GSK3B, JNK3  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    smiles = list(itertools.islice(read_records(moses_path("test"), "SMILES"), args.n))
    print(f"{args.n} MOSES test molecules, {os.cpu_count()} CPUs")
    print("| oracle | workers | cold molecules/s | warm molecules/s | warm/cold |\n|---|---|---|---|---|")
    for cls in (P.QED, P.SAScore, P.LogP, JNK3, GSK3B):
        for workers in args.workers:
            oracle = cls(n_workers=workers)
            if workers > 1:
                oracle(smiles[: P.QED.parallel_threshold * workers])  # start the pool outside the timing
                oracle._canonical.clear(), oracle._cache.clear()
            start = time.perf_counter()
            oracle(smiles)
            cold = args.n / (time.perf_counter() - start)
            start = time.perf_counter()
            oracle(smiles)
            warm = args.n / (time.perf_counter() - start)
            oracle.close()
            print(f"| {cls.__name__} | {workers} | {cold:,.0f} | {warm:,.0f} | {warm / cold:,.0f}× |", flush=True)


if __name__ == "__main__":
    main()
