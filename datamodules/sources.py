"""Where records come from: line-oriented sequence files and the data sets shipped with wheels.

A *record* is one sequence string. Files are read lazily, one line at a time, so a 1.6M-line
MOSES file never has to fit in a Python list.

Formats (by suffix, ``.gz`` is decompressed on the fly):
- ``.smi`` / ``.txt`` / anything else: one sequence per line; with ``column=None`` the first
  whitespace-separated field is taken (``.smi`` files often carry an id after the SMILES).
- ``.csv`` / ``.tsv``: a header line, and ``column`` names the field to read. Without
  ``column``: the only column, else the one column named like a sequence (case-insensitive:
  ``smiles``, ``sequence``, ``seq``, … see :data:`SEQUENCE_COLUMNS`); a header with none or
  several such names is an error that lists the columns (never a guess such as "the first
  column", which reads an ``id,smiles`` file's ids). ``where`` keeps only rows whose fields equal
  the given value (or one of a list of values), e.g. ``{"data_label": "training"}``; ``exclude``
  drops rows whose field is one of the values.

Files must be UTF-8 (a byte-order mark is allowed). A file that is not, a truncated or corrupt
``.gz``, an empty table or an unreadable CSV is a :class:`DataFileError` that names the file (and
the line, where there is one) and the fix.
"""

from __future__ import annotations

import csv
import gzip
import importlib.metadata
import io
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

ASSET_DIR = Path(__file__).parent / "assets"


#: Column names (lower case) that hold sequences, by domain; a table's sequence column is found
#: among them when none is named.
SEQUENCE_COLUMNS = {
    "smiles": ("smiles", "canonical_smiles", "smi"),
    "dna": ("sequence", "seq", "sequences", "dna"),
    "protein": ("sequence", "seq", "sequences", "protein", "aas", "variant", "variants"),
}
_READ_ERRORS = (UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error)


class DataFileError(ValueError):
    """A data file is missing, empty, unreadable, or lacks a requested column."""


def sequence_column(header: Sequence[str], path: str | Path, domain: str | None = None,
                    option: str = "column") -> str:
    """The column of a table that holds the sequences when the user named none: the only column,
    else the one column named like the ``domain``'s sequences (any domain's when ``None``),
    case-insensitively. Otherwise a :class:`DataFileError` lists the columns and names ``option``,
    the setting that picks one."""
    header = list(header)
    if len(header) == 1:
        return header[0]
    names = SEQUENCE_COLUMNS.get(domain or "") or tuple(
        dict.fromkeys(n for group in SEQUENCE_COLUMNS.values() for n in group))
    matches = [h for h in header if h.strip().lower() in names]
    if len(matches) == 1:
        return matches[0]
    found = (f"several columns named like sequences {matches}" if matches
             else f"no column named like sequences ({', '.join(names)})")
    raise DataFileError(f"{path} has {found}; columns are {header}: name the column to read with {option}")


def _bad_utf8_line(path: Path) -> str:
    """`` (line N: b'...')``: where the first non-UTF-8 bytes of the file are, or ``""``."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as raw:
            for number, line in enumerate(raw, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as err:
                    return f" (line {number}: {line[max(err.start - 20, 0):err.end + 20]!r})"
    except (OSError, EOFError, zlib.error):
        pass
    return ""


def read_error(path: str | Path, error: BaseException, line: int | None = None) -> DataFileError:
    """A :class:`DataFileError` naming the file and the fix for an error raised while reading it
    (not UTF-8, a truncated or corrupt ``.gz``); ``line``: data lines read before it."""
    path = Path(path)
    after = f" after line {line}" if line is not None else ""
    if isinstance(error, UnicodeDecodeError):
        return DataFileError(f"{path} is not UTF-8 text{_bad_utf8_line(path)}: save it as UTF-8, e.g. "
                             f"iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}")
    if isinstance(error, EOFError):
        return DataFileError(f"{path} is truncated: its gzip stream ends early{after} ({error}); copy or "
                             "download the file again (gzip -t checks it)")
    if isinstance(error, (gzip.BadGzipFile, zlib.error)):
        return DataFileError(f"{path} is not a readable gzip file{after} ({error}); copy or download it again "
                             "(gzip -t checks it), or drop the .gz suffix if it is plain text")
    return DataFileError(f"{path}: {error}")


class _CheckedText:
    """A text file handle whose read errors are :func:`read_error`'s: file, line and fix."""

    def __init__(self, handle: io.TextIOBase, path: Path):
        self._handle, self.path, self.line = handle, path, 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        try:
            line = next(self._handle)
        except _READ_ERRORS as err:
            raise read_error(self.path, err, self.line) from err
        self.line += 1
        return line

    def readline(self, *args) -> str:
        try:
            line = self._handle.readline(*args)
        except _READ_ERRORS as err:
            raise read_error(self.path, err, self.line) from err
        self.line += line.endswith("\n")
        return line

    def read(self, *args) -> str:
        try:
            return self._handle.read(*args)
        except _READ_ERRORS as err:
            raise read_error(self.path, err) from err

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getattr__(self, name):
        return getattr(self._handle, name)


def open_text(path: str | Path) -> _CheckedText:
    """A UTF-8 text handle (``.gz`` decompressed; ``newline=""`` for the csv module) whose read
    errors name the file, the line and the fix."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    if path.suffix == ".gz":
        return _CheckedText(io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline=""), path)
    return _CheckedText(open(path, encoding="utf-8-sig", newline=""), path)


def line_examples(index, values: Sequence | None = None, n: int = 3) -> str:
    """The first ``n`` rows of a :func:`read_table` frame's ``index`` as file lines (``lines [2, 5]``),
    with their ``values`` when given (``line 2: 'n/a', line 5: '0,06'``)."""
    rows = [int(i) + 2 for i in list(index)[:n]]  # +2: 1-based, after the header line
    if values is None:
        return f"lines {rows}"
    return ", ".join(f"line {r}: {v!r}" for r, v in zip(rows, list(values)[:n]))


def read_table(path: str | Path):
    """A CSV or TSV (``.tsv``/``.tab``/``.txt``; optionally ``.gz``) as a pandas frame of strings,
    so that checks see the raw cells: no cell becomes NaN (``NA`` stays the text ``NA``), headers
    are stripped. Unreadable files are :class:`DataFileError` naming the file and the fix."""
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data table not found: {path}")
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    sep = "\t" if suffixes and suffixes[-1] in (".tsv", ".tab", ".txt") else ","
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except _READ_ERRORS as err:
        raise read_error(path, err) from err
    except pd.errors.EmptyDataError as err:
        raise DataFileError(f"{path} is empty (no header line)") from err
    except pd.errors.ParserError as err:
        raise DataFileError(f"{path} is not a readable {'TSV' if sep != ',' else 'CSV'} table: {err}") from err
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise DataFileError(f"{path} has no data rows")
    return frame


def table_delimiter(path: Path) -> str | None:
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
    caller instead of shifting the record numbering. Without ``column``, a table's sequence
    column is :func:`sequence_column`'s choice.
    """
    path = Path(path).expanduser()
    delimiter = table_delimiter(path)
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
        column = column or sequence_column(header, path, option="`column` (--data.column)")
        wanted = [column] + list(where or {}) + list(exclude or {})
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DataFileError(f"{path}: no column {missing}; columns are {header}")
        idx = header.index(column)
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


CHEMBL_HOLDOUT = 10_000  # held-out molecules of the extended ChEMBL split
_CHEMBL_SPLIT_SEED = 31


def chembl_extended_split(cache_dir: str | Path | None = None) -> dict[str, Path]:
    """A larger ChEMBL v31 training set from the shipped files: ``train`` = the 50k training
    subset plus 90,000 of the 100k validation SMILES, ``holdout`` = the other 10,000 (a seeded
    random choice, the same on every machine). Pretraining on the 50k subset alone overfits
    after ≈ 10 passes (checkpoints/molgpt-chembl/README.md); this split gives 2.8× the data with
    a held-out set for validation, FCD and IntDiv1 that no model trained on it has seen.

    The two files are written once (plain text, one SMILES a line) under ``cache_dir``
    (default ``$REWARDFIT_CACHE/chembl_splits`` or ``~/.cache/rewardfit/chembl_splits``),
    atomically and with the user's umask, and reused while the shipped files are unchanged.
    """
    import hashlib

    import numpy as np

    from networks.files import cache_root, write_lines

    train, valid = chembl_path("train"), chembl_path("valid")
    key = hashlib.sha256()
    for source in (train, valid):
        key.update(source.read_bytes())
    key.update(f"{_CHEMBL_SPLIT_SEED}:{CHEMBL_HOLDOUT}".encode())
    base = Path(cache_dir) if cache_dir is not None else cache_root() / "chembl_splits"
    directory = base.expanduser() / f"v1-{key.hexdigest()[:16]}"
    paths = {"train": directory / "train.txt", "holdout": directory / "holdout.txt"}
    if all(p.is_file() for p in paths.values()):
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    held = list(read_records(valid))
    order = np.random.default_rng(_CHEMBL_SPLIT_SEED).permutation(len(held))
    holdout = [held[i] for i in np.sort(order[:CHEMBL_HOLDOUT])]
    extra = [held[i] for i in np.sort(order[CHEMBL_HOLDOUT:])]
    contents = {"train": list(read_records(train)) + extra, "holdout": holdout}
    for name, records in contents.items():
        write_lines(paths[name], records)
    return paths


def dhs_path() -> Path:
    """The ENCODE cell-type-specific DHS set (200 bp) shipped in the repository."""
    return ASSET_DIR / "dna_dhs" / "dhs_4celltypes_200bp.tsv.gz"
