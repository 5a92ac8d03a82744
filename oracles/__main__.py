"""Score a file of sequences with any oracle config.

    python -m oracles score --oracle configs/oracles/qed.yaml --input mols.smi --output scores.csv
        [--column smiles] [--batch-size 1024] [--workers N]

Writes one row per input row, in input order: ``input, canonical, valid, <raw properties…>,
energy``. Rows that cannot be scored (empty, unparsable) get the oracle's penalty energy and
``valid = 0``; none is dropped. The output is written to a temporary file and renamed when
complete, so an interrupted run never leaves a partial CSV that looks finished; it is created
with the user's umask.

The input is never overwritten: an output that is the input (same path, a link to it) is refused,
as are an output that is a directory and an input with nothing to score. In a ``.csv``/``.tsv``
input with several columns and no ``--column``, the column named like the oracle's sequences
(``smiles``, ``sequence``, ``seq``, …, any case) is read, or the command stops and lists the
columns (see :func:`datamodules.sources.sequence_column`).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

from tqdm.auto import tqdm


def _rows(path: Path, column: str | None, domain: str | None):
    """The input's sequences, in order. The header (and the column) is read now, so that a wrong
    column stops the command before anything is scored."""
    from datamodules.sources import DataFileError, open_text, sequence_column, table_delimiter

    delimiter = table_delimiter(path)
    if delimiter is None and column is not None:
        raise DataFileError(f"{path}: --column needs a .csv or .tsv input; this file is read one sequence per line")
    handle = open_text(path)
    if delimiter is None:
        def lines():
            with handle:
                for line in handle:
                    yield line.rstrip("\r\n").split()[0] if line.strip() else ""
        return lines()
    try:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if not reader.fieldnames:
            raise DataFileError(f"{path} is empty (no header line)")
        column = column or sequence_column(reader.fieldnames, path, domain, option="--column")
        if column not in reader.fieldnames:
            raise DataFileError(f"{path} has no column {column!r}; columns are {reader.fieldnames}")
    except BaseException:
        handle.close()
        raise

    def cells():
        with handle:
            for row in reader:
                yield (row.get(column) or "").strip()
    return cells()


def _domain(oracle) -> str | None:
    """``smiles`` or ``protein`` when every part of the oracle reads that kind of sequence."""
    from oracles.base import MoleculeOracle
    from oracles.fitness_table import FitnessTable

    kinds = {"smiles" if isinstance(part, MoleculeOracle) else "protein" if isinstance(part, FitnessTable) else None
             for part in getattr(oracle, "oracles", None) or [oracle]}
    return kinds.pop() if len(kinds) == 1 else None


def _check_paths(input_path: Path, output: Path) -> None:
    """Stop before scoring when the output cannot be written or would overwrite the input."""
    if not input_path.is_file():
        what = "is a directory, not a file" if input_path.is_dir() else "not found"
        raise SystemExit(f"error: input file {input_path} {what}")
    if output.is_dir():
        example = os.path.join(output, "scores.csv")
        raise SystemExit(f"error: --output {output} is a directory; give a file path, e.g. {example}")
    if output.resolve() == input_path.resolve() or (output.exists() and os.path.samefile(output, input_path)):
        raise SystemExit(f"error: --output {output} is the input file: the scores would replace your data; "
                         "give another output path")


def score(oracle_config: Path, input_path: Path, output: Path, column: str | None = None,
          batch_size: int = 1024, workers: int = 1) -> int:
    """Score ``input_path`` into ``output`` (a new CSV, see the module docstring); the number of rows.

    Stops with an error, and leaves any existing ``output`` untouched, when the output is the input
    (the same path or the same file), a directory, or cannot be created; when the input is
    missing, empty (no rows, or no non-empty sequence), unreadable (not UTF-8, truncated ``.gz``)
    or has no column to read (see :func:`datamodules.sources.sequence_column`). The output is
    created with the user's umask, like any file they write."""
    from datamodules.sources import DataFileError
    from networks.files import honour_umask
    from oracles.config import oracle_from_config

    _check_paths(input_path, output)
    oracle = oracle_from_config(oracle_config)
    if workers > 1 and hasattr(oracle, "n_workers"):
        oracle.n_workers = workers
    try:
        rows = _rows(input_path, column, _domain(oracle))
    except DataFileError as err:
        raise SystemExit(f"error: {err}") from err
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
    except OSError as err:
        raise SystemExit(f"error: cannot write --output {output}: {err}") from err
    n = nonempty = 0
    try:
        with os.fdopen(fd, "w", newline="") as handle, tqdm(desc="scoring", unit=" rows") as bar:
            writer = None
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
                nonempty += sum(1 for text in batch if text)
                bar.update(len(batch))
        if nonempty == 0:
            what = "no rows" if n == 0 else f"{n} row(s), all empty"
            where = f" in column {column!r}" if column else ""
            raise SystemExit(f"error: {input_path} has nothing to score{where}: {what}; no output written")
        honour_umask(tmp)  # mkstemp's 0600 would stay on the renamed file
        os.replace(tmp, output)
    except DataFileError as err:
        raise SystemExit(f"error: {err}; no output written") from err
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
    cmd.add_argument("--column", help="column of a .csv/.tsv input (default: the only column, or the one "
                     "named like the sequences: smiles, sequence, seq, …)")
    cmd.add_argument("--batch-size", type=int, default=1024)
    cmd.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    n = score(args.oracle, args.input, args.output, args.column, args.batch_size, args.workers)
    print(f"scored {n} rows -> {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
