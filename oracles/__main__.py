"""Score a file of sequences with any oracle config.

    python -m oracles score --oracle configs/oracles/qed.yaml --input mols.smi --output scores.csv
        [--column smiles] [--batch-size 1024] [--workers N]

Writes one row per input row, in input order: ``input, canonical, valid, <raw properties…>,
energy``. Rows that cannot be scored (empty, unparsable) get the oracle's penalty energy and
``valid = 0``; none is dropped. The output is written to a temporary file and renamed when
complete, so an interrupted run never leaves a partial CSV that looks finished.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

from tqdm.auto import tqdm


def _rows(path: Path, column: str | None):
    from datamodules.sources import open_text

    suffixes = [s for s in path.suffixes if s != ".gz"]
    delimiter = {".csv": ",", ".tsv": "\t"}.get(suffixes[-1] if suffixes else "")
    with open_text(path) as handle:
        if delimiter is None:
            for line in handle:
                yield line.rstrip("\r\n").split()[0] if line.strip() else ""
            return
        reader = csv.DictReader(handle, delimiter=delimiter)
        column = column or reader.fieldnames[0]
        if column not in reader.fieldnames:
            raise SystemExit(f"error: {path} has no column {column!r}; columns are {reader.fieldnames}")
        for row in reader:
            yield (row.get(column) or "").strip()


def score(oracle_config: Path, input_path: Path, output: Path, column: str | None = None,
          batch_size: int = 1024, workers: int = 1) -> int:
    from oracles.config import oracle_from_config

    oracle = oracle_from_config(oracle_config)
    if workers > 1 and hasattr(oracle, "n_workers"):
        oracle.n_workers = workers
    if not input_path.is_file():
        raise SystemExit(f"error: input file not found: {input_path}")
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".csv", dir=output.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", newline="") as handle, tqdm(desc="scoring", unit=" rows") as bar:
            writer = None
            rows = _rows(input_path, column)
            while True:
                batch = [r for _, r in zip(range(batch_size), rows)]
                if not batch:
                    break
                scores = oracle(batch)
                energies = scores.energies.numpy()
                if writer is None:
                    names = list(scores.values)
                    energy_cols = ["energy"] if energies.ndim == 1 else [f"energy_{i}" for i in range(energies.shape[1])]
                    writer = csv.writer(handle)
                    writer.writerow(["input", "canonical", "valid", *names, *energy_cols])
                for i, text in enumerate(batch):
                    energy = [energies[i]] if energies.ndim == 1 else list(energies[i])
                    writer.writerow([text, scores.canonical[i] if scores.canonical else "",
                                     int(scores.valid[i]), *(scores.values[k][i] for k in names), *energy])
                n += len(batch)
                bar.update(len(batch))
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m oracles", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("score", help="score a file of sequences")
    cmd.add_argument("--oracle", type=Path, required=True, help="oracle YAML (class_path/init_args)")
    cmd.add_argument("--input", type=Path, required=True, help=".smi/.txt (one per line) or .csv/.tsv")
    cmd.add_argument("--output", type=Path, required=True)
    cmd.add_argument("--column", help="column of a .csv/.tsv input (default: the first)")
    cmd.add_argument("--batch-size", type=int, default=1024)
    cmd.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    n = score(args.oracle, args.input, args.output, args.column, args.batch_size, args.workers)
    print(f"scored {n} rows -> {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
