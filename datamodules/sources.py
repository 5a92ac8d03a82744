"""Where records come from: line-oriented sequence files and the data sets shipped with wheels.

A *record* is one sequence string. Files are read lazily, one line at a time, so a 1.6M-line
MOSES file never has to fit in a Python list.

Formats (by suffix, ``.gz`` is decompressed on the fly):
- ``.smi`` / ``.txt`` / anything else: one sequence per line; with ``column=None`` the first
  whitespace-separated field is taken (``.smi`` files often carry an id after the SMILES).
- ``.csv`` / ``.tsv``: a header line, and ``column`` names the field to read. ``where`` keeps
  only rows whose fields equal the given value (or one of a list of values), e.g.
  ``{"data_label": "training"}``; ``exclude`` drops rows whose field is one of the values.
"""

from __future__ import annotations

import csv
import gzip
import importlib.metadata
import io
from collections.abc import Iterator, Mapping
from pathlib import Path

ASSET_DIR = Path(__file__).parent / "assets"


class DataFileError(ValueError):
    """A data file is missing, empty, or lacks a requested column."""


def open_text(path: str | Path) -> io.TextIOBase:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _table_delimiter(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] == ".csv":
        return ","
    if suffixes and suffixes[-1] in (".tsv", ".tab"):
        return "\t"
    return None


def read_records(
    path: str | Path,
    column: str | None = None,
    where: Mapping[str, str | list[str]] | None = None,
    exclude: Mapping[str, list[str]] | None = None,
) -> Iterator[str]:
    """Yield one record per data line of ``path`` (see the module docstring for formats).

    A row that lacks the requested field yields ``""`` so that it is counted as invalid by the
    caller instead of shifting the record numbering.
    """
    path = Path(path).expanduser()
    delimiter = _table_delimiter(path)
    with open_text(path) as handle:
        if delimiter is None:
            if column is not None or where or exclude:
                raise DataFileError(f"{path}: column/where need a .csv or .tsv file")
            for line in handle:
                fields = line.split()
                yield fields[0] if fields else ""
            return
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise DataFileError(f"{path} is empty (no header line)")
        header = [h.strip() for h in header]
        wanted = [column or header[0]] + list(where or {}) + list(exclude or {})
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DataFileError(f"{path}: no column {missing}; columns are {header}")
        idx = header.index(column or header[0])
        def allowed(values) -> set[str]:
            return {str(v) for v in values} if isinstance(values, (list, tuple, set)) else {str(values)}

        keep = [(header.index(k), allowed(v)) for k, v in (where or {}).items()]
        drop = [(header.index(k), allowed(v)) for k, v in (exclude or {}).items()]
        for row in reader:
            if any(len(row) <= i or row[i] not in v for i, v in keep):
                continue
            if any(len(row) > i and row[i] in v for i, v in drop):
                continue
            yield row[idx].strip() if len(row) > idx else ""


def moses_path(split: str = "train") -> Path:
    """Path of a MOSES split (``train``, ``test``, ``test_scaffolds``) inside the ``molsets`` wheel.

    The wheel is located with ``importlib.metadata`` and never imported: ``moses`` pins old
    dependencies and its import fails with current ones. Install it with
    ``pip install --no-deps molsets``.
    """
    if split not in ("train", "test", "test_scaffolds"):
        raise ValueError(f"MOSES split must be train, test or test_scaffolds, got {split!r}")
    try:
        dist = importlib.metadata.distribution("molsets")
    except importlib.metadata.PackageNotFoundError as err:
        raise FileNotFoundError(
            "the MOSES data ship in the `molsets` wheel, which is not installed: "
            "pip install --no-deps molsets (or give a path to the SMILES file)"
        ) from err
    wanted = f"moses/dataset/data/{split}.csv.gz"
    for file in dist.files or []:
        if str(file).replace("\\", "/") == wanted:
            return Path(dist.locate_file(file))
    raise FileNotFoundError(f"the installed molsets wheel has no {wanted}")


def chembl_path(split: str = "train") -> Path:
    """ChEMBL v31 SMILES shipped in the repository (``train`` = 50k, ``valid`` = 100k)."""
    names = {"train": "chemblv31_mini_train.txt.gz", "valid": "chemblv31_valid.txt.gz"}
    if split not in names:
        raise ValueError(f"ChEMBL split must be train or valid, got {split!r}")
    return ASSET_DIR / "chembl" / names[split]


def dhs_path() -> Path:
    """The ENCODE cell-type-specific DHS set (200 bp) shipped in the repository."""
    return ASSET_DIR / "dna_dhs" / "dhs_4celltypes_200bp.tsv.gz"
