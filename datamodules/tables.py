"""Labelled sequence tables for reward models: a sequence column and one or more target columns.

Why a separate family from ``datamodules.sequences``: pretraining streams millions of unlabelled
records, whereas a reward model needs (sequence, target) pairs, a split that is fixed before
training (random, scaffold, by chromosome or by a label column), and strict checks of the
targets — a silently dropped column or a NaN target corrupts a model that later scores every
generated sequence. Tables are small enough (QM9: 130k rows) to hold in memory.

Checks, in this order, each with a message that names the file, the column and example rows:
missing columns; non-numeric target cells; empty/NaN targets; invalid sequences (unparsable
SMILES, non-ACGT or wrong-length DNA). With ``drop_invalid: true`` such rows are dropped and
counted instead (``n_dropped`` by reason, logged).

Batches are ``{"sequences": list[str], "targets": Tensor}``: the model featurises the strings
itself, so the same code path serves training and :meth:`RewardModelModule.predict`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.sources import DataFileError, dhs_path, read_table, sequence_column
from datamodules.sources import line_examples as _examples

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
#: The shared data directory next to the repository (present on the project's machines only).
SHARED_DATA = REPO.parent / "shared" / "data"
STAGES = ("train", "val", "test")
_COMPLEMENT = str.maketrans("ACGT", "TGCA")


def reverse_complement(sequence: str) -> str:
    return sequence.translate(_COMPLEMENT)[::-1]


def sequence_domain(tokenizer: str | None) -> str:
    """The kind of sequence a tokenizer spec implies: ``smiles``, ``dna``, ``protein`` or ``any``
    (a model directory: anything its tokenizer accepts)."""
    spec = str(tokenizer or "any")
    if spec == "smiles":
        return "smiles"
    if spec == "dna" or spec.startswith("dna-"):
        return "dna"
    if spec == "protein":
        return "protein"
    return "any"


def sequence_validator(domain: str, length: int | None = None):
    """A predicate ``str -> bool`` for the domain (and exact length): ``oracles.canonical``'s, the
    one home of validity (imported here lazily, with RDKit)."""
    from oracles.canonical import sequence_validator as validator

    return validator(domain, length)


def split_random(n: int, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Seeded random split in the given train/val/test fractions."""
    order = np.random.default_rng(seed).permutation(n)
    a = int(round(fractions[0] * n))
    b = a + int(round(fractions[1] * n))
    return {"train": np.sort(order[:a]), "val": np.sort(order[a:b]), "test": np.sort(order[b:])}


def split_scaffold(smiles: Sequence[str], fractions: Sequence[float]) -> dict[str, np.ndarray]:
    """Bemis–Murcko scaffold split: whole scaffold groups, largest first into training, so the
    validation and test sets hold scaffolds never seen in training (the usual MoleculeNet rule)."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    groups: dict[str, list[int]] = {}
    for i, s in enumerate(smiles):
        try:
            key = MurckoScaffold.MurckoScaffoldSmiles(smiles=s, includeChirality=False)
        except Exception:  # unparsable rows were removed before; keep any oddity on its own
            key = f"?{i}"
        groups.setdefault(key, []).append(i)
    n = len(smiles)
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for group in sorted(groups.values(), key=lambda g: (-len(g), g[0])):
        if len(out["train"]) + len(group) <= fractions[0] * n:
            out["train"].extend(group)
        elif len(out["val"]) + len(group) <= fractions[1] * n:
            out["val"].extend(group)
        else:
            out["test"].extend(group)
    return {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in out.items()}


class _Rows(Dataset):
    def __init__(self, sequences: list[str], targets: np.ndarray, reverse_complement: bool = False):
        self.sequences, self.targets = sequences, targets
        self.reverse_complement = reverse_complement

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i):
        seq = self.sequences[i]
        if self.reverse_complement and torch.rand(()) < 0.5:  # torch RNG: seeded by seed_everything
            seq = reverse_complement(seq)
        return seq, self.targets[i]


def _collate(items):
    sequences = [s for s, _ in items]
    targets = torch.from_numpy(np.stack([t for _, t in items]))
    return {"sequences": sequences, "targets": targets}


class TableDataModule(L.LightningDataModule):
    """Any CSV/TSV of sequences and numeric targets (regression, or 0/1 labels for classification).

    Args:
        path: the table (``.csv``, ``.tsv``/``.txt``, optionally ``.gz``).
        sequence_column: the column holding SMILES / DNA / protein strings; default: the one
            column named like them (``smiles``, ``sequence``, ``seq``, … any case; see
            :func:`datamodules.sources.sequence_column`), else an error listing the columns.
        targets: target columns, in the order of the model's ``tasks``.
        task: ``regression``, ``binary``/``multilabel`` (0/1 columns) or ``multiclass`` (then
            ``class_column`` holds one label per row and ``targets`` lists the classes in order).
        class_column: the label column for ``multiclass``.
        split: ``random`` (seeded, ``fractions``), ``scaffold`` (SMILES only), or ``column``
            (``split_column`` equals one of ``val_values`` / ``test_values``; the rest is training,
            or only ``train_values`` when given).
        fractions: train/val/test fractions for the random and scaffold splits.
        seed: split seed.
        drop_invalid: drop (and count) rows with missing/NaN/non-numeric targets or invalid
            sequences instead of raising.
        sequence_length: DNA/protein sequences of another length are invalid.
        reverse_complement: training DNA is reverse-complemented with probability ½.
        max_rows: read only the first rows (smoke tests).
        tokenizer: linked from the model by ``main.py``; sets what a valid sequence is.
        batch_size / val_batch_size / num_workers: DataLoader settings.
    """

    default_path: Path | None = None
    aliases: dict[str, str] = {}

    def __init__(self, path: str | None = None, sequence_column: str | None = None,
                 targets: list[str] | None = None, task: str = "regression",
                 class_column: str | None = None, split: str = "random",
                 fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0,
                 split_column: str | None = None, train_values: list[str] | None = None,
                 val_values: list[str] | None = None, test_values: list[str] | None = None,
                 drop_invalid: bool = False, sequence_length: int | None = None,
                 reverse_complement: bool = False, max_rows: int | None = None,
                 tokenizer: str | None = None, batch_size: int = 256, val_batch_size: int | None = None,
                 num_workers: int = 0):
        super().__init__()
        if path is None and self.default_path is None:
            raise ValueError(f"{type(self).__name__} needs a data path")
        self.path = Path(path).expanduser() if path is not None else self.default_path
        if task not in ("regression", "binary", "multilabel", "multiclass"):
            raise ValueError(f"task must be regression, binary, multilabel or multiclass, got {task!r}")
        if not targets:
            raise ValueError("targets: name at least one target column (or class, for multiclass)")
        if task == "multiclass" and not class_column:
            raise ValueError("a multiclass table needs class_column (the column holding each row's class)")
        if split not in ("random", "scaffold", "column"):
            raise ValueError(f"split must be random, scaffold or column, got {split!r}")
        if split == "column" and (not split_column or not (val_values or test_values)):
            raise ValueError("split: column needs split_column and val_values and/or test_values")
        if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
            raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
        self.sequence_column, self.targets, self.task = sequence_column, list(targets), task
        self.class_column = class_column
        self.split, self.fractions, self.seed = split, tuple(float(f) for f in fractions), seed
        self.split_column = split_column
        self.split_values = {"train": train_values, "val": val_values, "test": test_values}
        self.drop_invalid, self.sequence_length = drop_invalid, sequence_length
        self.reverse_complement, self.max_rows = reverse_complement, max_rows
        self.tokenizer_spec = tokenizer
        self.domain = sequence_domain(tokenizer)
        if reverse_complement and self.domain not in ("dna", "any"):
            raise ValueError("reverse_complement needs DNA sequences (tokenizer dna / dna-kN)")
        if split == "scaffold" and self.domain not in ("smiles", "any"):
            raise ValueError("a scaffold split needs SMILES")
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers = num_workers
        self.n_dropped: dict[str, int] = {}
        self._columns: set[str] = set()
        self.data: dict[str, tuple[list[str], np.ndarray]] = {}

    # -- reading and checking -----------------------------------------------------------------
    def _column(self, name: str) -> str:
        """A target's column: the name itself when the table has it, else its alias (QM9's ``alpha``
        → ``Polarizability_bohr3``)."""
        return name if name in self._columns else self.aliases.get(name, name)

    def _invalid(self, reason: str, mask: pd.Series, frame: pd.DataFrame, what: str) -> pd.DataFrame:
        if not mask.any():
            return frame
        count = int(mask.sum())
        if not self.drop_invalid:
            raise DataFileError(f"{self.path}: {count} row(s) with {what} "
                                f"({_examples(frame.index[mask], None)}); fix the table or set "
                                f"drop_invalid: true to drop and count them")
        self.n_dropped[reason] = self.n_dropped.get(reason, 0) + count
        return frame[~mask]

    def load_frame(self) -> pd.DataFrame:
        """The table, checked; what subclasses override to add columns (e.g. a derived split)."""
        frame = read_table(self.path)
        if self.max_rows is not None:
            frame = frame.iloc[: self.max_rows]
        return frame

    def _targets_of(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        if self.task == "multiclass":
            labels = frame[self.class_column].str.strip()
            unknown = ~labels.isin(self.targets)
            if unknown.any() and not self.drop_invalid:
                raise DataFileError(f"{self.path}: column {self.class_column!r} has classes outside "
                                    f"{self.targets}: {_examples(frame.index[unknown], labels[unknown])}")
            frame = self._invalid("unknown_class", unknown, frame, "an unknown class")
            index = {c: i for i, c in enumerate(self.targets)}
            return frame, frame[self.class_column].str.strip().map(index).to_numpy(np.int64)
        columns = [self._column(t) for t in self.targets]
        raw = frame[columns].apply(lambda c: c.str.strip())
        empty = raw.isin(["", "nan", "NaN", "NA", "N/A", "null", "None"])
        numbers = raw.apply(lambda c: pd.to_numeric(c, errors="coerce"))
        non_numeric = numbers.isna() & ~empty
        for column in columns:
            bad = non_numeric[column]
            if bad.any() and not self.drop_invalid:
                raise DataFileError(f"{self.path}: target column {column!r} has {int(bad.sum())} non-numeric "
                                    f"value(s): {_examples(frame.index[bad], raw.loc[bad, column])}")
        frame = self._invalid("non_numeric_target", non_numeric.any(axis=1), frame, "non-numeric targets")
        numbers = numbers.loc[frame.index]
        missing = numbers.isna().any(axis=1) | ~np.isfinite(numbers.to_numpy(np.float64)).all(axis=1)
        frame = self._invalid("missing_target", missing, frame, "empty, NaN or infinite targets")
        values = numbers.loc[frame.index].to_numpy(np.float64)
        if self.task in ("binary", "multilabel") and not np.isin(values, (0.0, 1.0)).all():
            raise DataFileError(f"{self.path}: {self.task} targets must be 0 or 1")
        return frame, values.astype(np.float32)

    def _sequences_of(self, frame: pd.DataFrame) -> pd.DataFrame:
        ok = sequence_validator(self.domain, self.sequence_length)
        sequences = frame[self.sequence_column].str.strip()
        bad = ~sequences.map(ok).astype(bool)
        if bad.any() and not self.drop_invalid:
            length = f" of length {self.sequence_length}" if self.sequence_length else ""
            raise DataFileError(f"{self.path}: {int(bad.sum())} invalid {self.domain} sequence(s){length} in "
                                f"column {self.sequence_column!r}: "
                                f"{_examples(frame.index[bad], sequences[bad].str.slice(0, 60))}")
        return self._invalid("invalid_sequence", bad, frame, "invalid sequences")

    def _split(self, frame: pd.DataFrame, sequences: list[str]) -> dict[str, np.ndarray]:
        if self.split == "random":
            return split_random(len(frame), self.fractions, self.seed)
        if self.split == "scaffold":
            return split_scaffold(sequences, self.fractions)
        values = frame[self.split_column].str.strip().to_numpy()
        val = np.isin(values, [str(v) for v in self.split_values["val"] or []])
        test = np.isin(values, [str(v) for v in self.split_values["test"] or []])
        train = ~(val | test)
        if self.split_values["train"] is not None:
            train &= np.isin(values, [str(v) for v in self.split_values["train"]])
        return {k: np.flatnonzero(m) for k, m in (("train", train), ("val", val), ("test", test))}

    def setup(self, stage: str | None = None) -> None:
        if self.data:
            return
        frame = self.load_frame()
        self._columns = set(frame.columns)
        if self.sequence_column is None:
            self.sequence_column = sequence_column(list(frame.columns), self.path,
                                                   None if self.domain == "any" else self.domain, "sequence_column")
        wanted = [self.sequence_column]
        wanted += [self.class_column] if self.task == "multiclass" else [self._column(t) for t in self.targets]
        if self.split == "column":
            wanted.append(self.split_column)
        missing = [c for c in dict.fromkeys(wanted) if c not in frame.columns]
        if missing:
            raise DataFileError(f"{self.path}: no column {missing}; columns are {list(frame.columns)}")
        self.n_dropped = {}
        frame, targets = self._targets_of(frame)
        keep = self._sequences_of(frame).index
        targets = targets[frame.index.get_indexer(keep)]
        frame = frame.loc[keep]
        if frame.empty:
            raise DataFileError(f"{self.path}: no valid rows left (dropped {self.n_dropped})")
        if self.n_dropped:
            log.warning("%s: dropped %d invalid row(s): %s", self.path, sum(self.n_dropped.values()),
                        self.n_dropped)
        sequences = frame[self.sequence_column].str.strip().tolist()
        parts = self._split(frame, sequences)
        for name, idx in parts.items():
            self.data[name] = ([sequences[i] for i in idx], targets[idx])
        if not len(parts["train"]):
            raise DataFileError(f"{self.path}: the {self.split} split left no training rows")
        log.info("%s: %s", type(self).__name__, {k: len(v[0]) for k, v in self.data.items()})

    # -- what the model needs -------------------------------------------------------------------
    def target_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (float64) of each training target, for standardisation."""
        self.setup()
        y = self.data["train"][1].astype(np.float64)
        if self.task != "regression":
            k = len(self.targets)
            return np.zeros(k), np.ones(k)
        std = y.std(axis=0)
        return y.mean(axis=0), np.where(std > 0, std, 1.0)

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        self.setup()
        sequences, targets = self.data[stage]
        if not sequences:
            raise DataFileError(f"{self.path}: the {stage} split is empty")
        rows = _Rows(sequences, targets, self.reverse_complement and stage == "train")
        return DataLoader(rows, batch_size=self.batch_size if stage == "train" else self.val_batch_size,
                          shuffle=shuffle, collate_fn=_collate, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)

    def predict_dataloader(self):
        return self._loader("test", False)


class QM9DataModule(TableDataModule):
    """QM9 (130,831 molecules, DFT properties) from ``../shared/data/qm9/qm9_qm9pack.csv.gz``.

    Targets may be given by their MoleculeNet names — ``alpha`` (isotropic polarizability,
    bohr³), ``gap`` (HOMO–LUMO gap, Hartree), ``u0`` (internal energy at 0 K, Hartree), ``homo``,
    ``lumo``, ``mu``, ``r2``, ``zpve``, ``cv``, … — or by the file's column names. Units are the
    source's. Split: 80/10/10 random with a fixed seed (as in the Iterative Rewarded Soups paper)
    or ``scaffold``.
    """

    default_path = SHARED_DATA / "qm9" / "qm9_qm9pack.csv.gz"
    aliases = {"alpha": "Polarizability_bohr3", "gap": "HOMO_LUMO_gap_au", "u0": "InternalEnergy_0K_au",
               "homo": "HOMO_au", "lumo": "LUMO_au", "mu": "Dipole_debye", "r2": "R2_bohr2",
               "zpve": "ZPVE_au", "u298": "InternalEnergy_298K_au", "h298": "Enthalphy_298K_au",
               "g298": "GibbsFreeEnergy_298K_au", "cv": "Heatcapacity_Cv_cal_mol_K"}
    units = {"alpha": "bohr³", "gap": "Ha", "u0": "Ha", "homo": "Ha", "lumo": "Ha", "mu": "D", "r2": "bohr²",
             "zpve": "Ha", "u298": "Ha", "h298": "Ha", "g298": "Ha", "cv": "cal/(mol·K)"}

    def __init__(self, path: str | None = None, targets: list[str] = ["alpha", "gap", "u0"],
                 sequence_column: str = "SMILES", split: str = "random", seed: int = 0,
                 tokenizer: str | None = "smiles", **kwargs):
        super().__init__(path=path, targets=targets, sequence_column=sequence_column, split=split, seed=seed,
                         tokenizer=tokenizer, **kwargs)

    def load_frame(self):
        if not self.path.is_file():
            raise FileNotFoundError(f"QM9 table not found at {self.path}: give data.path (a CSV with a SMILES "
                                    f"column and the property columns; see docs/reward_models.md)")
        return super().load_frame()


class MPRAActivityDataModule(TableDataModule):
    """An MPRA activity table (e.g. Gosai et al. 2024: ``sequence`` + one log2FC column per cell
    line) from a user path. Split: held-out chromosomes (test 7, 13; validation 19, 21, X — the
    usual split of that table; ``chr7`` and ``7`` both match) or ``random``. Reverse-complement
    augmentation is on by default: MPRA activity is measured for one orientation, but the
    motifs that drive it are read on both strands."""

    def __init__(self, path: str, targets: list[str] = ["HepG2_log2FC", "K562_log2FC", "SKNSH_log2FC"],
                 sequence_column: str = "sequence", split: str = "column", chromosome_column: str = "chr",
                 val_chromosomes: list[str] = ["19", "21", "X"], test_chromosomes: list[str] = ["7", "13"],
                 reverse_complement: bool = True, sequence_length: int | None = 200,
                 tokenizer: str | None = "dna", **kwargs):
        with_chr = lambda cs: [str(c) for c in cs] + [f"chr{c}" for c in cs]  # noqa: E731
        if split == "column":
            kwargs.update(split_column=chromosome_column, val_values=with_chr(val_chromosomes),
                          test_values=with_chr(test_chromosomes))
        super().__init__(path=path, targets=targets, sequence_column=sequence_column, split=split,
                         reverse_complement=reverse_complement, sequence_length=sequence_length,
                         tokenizer=tokenizer, **kwargs)


class DHSCellTypeDataModule(TableDataModule):
    """The ENCODE cell-type-specific DHS set (200 bp; shipped, also in ``../shared/data/dna_dhs``).

    ``task: multiclass`` (default) — softmax over ``TAG``, the cell type each site was selected
    for; ``task: multilabel`` — one sigmoid per cell-type peak column. ``targets`` are the short
    cell-type names, in output order. Split: the file's ``data_label`` (chr1 validation, chr2 test).
    """

    COLUMNS = {"GM12878": "GM12878_ENCLB441ZZZ", "hESCT0": "hESCT0_ENCLB449ZZZ",
               "K562": "K562_ENCLB843GMH", "HepG2": "HepG2_ENCLB029COU"}

    def __init__(self, path: str | None = None, task: str = "multiclass",
                 targets: list[str] = ["GM12878", "hESCT0", "K562", "HepG2"], split: str = "column",
                 split_column: str | None = "data_label", train_values: list[str] | None = ["training"],
                 val_values: list[str] | None = ["validation"], test_values: list[str] | None = ["test"],
                 sequence_length: int | None = 200, tokenizer: str | None = "dna", **kwargs):
        unknown = [t for t in targets if t not in self.COLUMNS]
        if unknown:
            raise ValueError(f"unknown DHS cell types {unknown}; known: {list(self.COLUMNS)}")
        self.aliases = dict(self.COLUMNS)
        kwargs.pop("sequence_column", None)
        kwargs.pop("class_column", None)
        super().__init__(path=path if path is not None else str(dhs_path()), sequence_column="sequence",
                         targets=targets, task=task, class_column="TAG_short" if task == "multiclass" else None,
                         split=split, split_column=split_column, train_values=train_values,
                         val_values=val_values, test_values=test_values, sequence_length=sequence_length,
                         tokenizer=tokenizer, **kwargs)

    def load_frame(self):
        frame = super().load_frame()
        if "TAG" not in frame.columns:
            raise DataFileError(f"{self.path}: no column ['TAG']; columns are {list(frame.columns)}")
        short = {v: k for k, v in self.COLUMNS.items()}
        frame["TAG_short"] = frame["TAG"].str.strip().map(lambda t: short.get(t, t))
        if self.task == "multiclass":  # a subset of cell types: the sites selected for them
            frame = frame[frame["TAG_short"].isin(self.targets)]
        return frame
