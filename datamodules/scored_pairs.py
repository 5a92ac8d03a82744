"""Pairs of scored sequences for the pair objectives (ERA, DPO), sharded over DDP ranks and
DataLoader workers and resumable inside an epoch.

Why a DataModule: with it, ``OfflineAlignment`` trains on *your* scored sequences (docking scores,
assay results, another generator's output) instead of sampling and scoring its reference::

    data:
      class_path: datamodules.ScoredPairsDataModule
      init_args: {path: my_scores.csv, sequence_column: smiles, energy_column: docking_score}

The file (CSV/TSV, optionally ``.gz``, or Parquet) has one row per sequence: the sequence, its
energy (lower is better) and, optionally, ``valid`` (true/false) and ``ref_logprob`` (the
reference's log-probability; the module computes it where the file has none). The Parquet that
``OfflineAlignment`` writes (``offline_samples.parquet``) is such a file, token ids included.

Who does what: this module reads and checks the file and deals out pairs; the alignment module
takes its samples from here and chooses the pairs (all of them, a seeded subset, the valid ones
only when invalid samples have a term of their own) and hands them back with :meth:`set_pairs`,
so that one rule picks pairs whichever way the data arrive. Used without a module that does so,
pairs are all n(n−1)/2 distinct ones or a seeded subset of ``max_pairs``.

Dealing: epoch ``e`` permutes the pairs with a generator seeded by ``(seed, e)``; rank ``r`` of
``W`` takes every ``W``-th pair and cuts its share into the same number of batches on every rank
(``datamodules.streaming.rank_batches``); within a rank, DataLoader worker ``w`` of ``K`` builds
the batches ``b`` with ``(b − skip) % K = w``, and the DataLoader's round robin yields them in
order. A batch is ``(i, j)``: row indices of the two members of each pair. The position (epoch,
batches done) is saved with the checkpoint, so a resumed run trains on the pairs an uninterrupted
one would.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset, get_worker_info

from datamodules.pairs import make_pairs
from datamodules.sources import DataFileError, read_table
from datamodules.sources import sequence_column as find_sequence_column
from datamodules.streaming import ResumableStreamMixin, StreamingLoader, rank_batches
from networks.tokenizers import TokenizationError, encode_checked, load_tokenizer

log = logging.getLogger(__name__)

TRUE, FALSE = {"1", "true", "yes", "y", "t"}, {"0", "false", "no", "n", "f"}


DUPLICATES = ("error", "first", "mean")


def read_scored_samples(path: str | Path, tokenizer, sequence_column: str | None = None,
                        energy_column: str = "energy", duplicates: str = "error") -> pd.DataFrame:
    """The file as the frame ``OfflineAlignment`` stores: ``sequence``, ``input_ids``, ``energy``,
    ``valid`` and, when the file has it, ``ref_logprob``.

    ``sequence_column`` defaults to the one column named like sequences (``sequence``, ``smiles``,
    …; see :func:`datamodules.sources.sequence_column`). Errors name the file, the column and
    example rows: a missing column, a non-numeric or non-finite energy (a penalty is the oracle's
    business, not a silent default here), a ``valid`` cell that is not a boolean. A sequence the
    tokenizer cannot encode is an error if the file marks it valid; if it is marked invalid it is
    left out, with a warning that counts such rows (the policy gives no probability to a string it
    cannot write, so there is nothing to train).

    A sequence in several rows with *different* energies (or ``valid`` flags) — replicate
    measurements, two files concatenated — is an error by default (``duplicates: error``): which
    energy it has decides which way its pairs point, so the choice is the user's, not a silent
    "first row wins". ``duplicates: first`` keeps each sequence's first row, ``mean`` averages its
    energies (its ``valid`` flags must agree); either warns with the counts. Rows repeating a
    sequence with the same energy are kept (pairs never join a sequence with itself)."""
    if duplicates not in DUPLICATES:
        raise ValueError(f"duplicates must be one of {DUPLICATES}, got {duplicates!r}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"scored samples not found: {path}")
    if path.suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid / ArrowIOError
            raise DataFileError(f"{path} is not a readable Parquet file ({err}); write it again") from err
    else:
        frame = read_table(path)
    frame = frame.reset_index(drop=True)
    sequence_column = sequence_column or find_sequence_column(list(frame.columns), path, option="sequence_column")
    missing = [c for c in (sequence_column, energy_column) if c not in frame.columns]
    if missing:
        raise DataFileError(f"{path}: no column {missing}; columns are {list(frame.columns)}")
    if len(frame) < 2:
        raise DataFileError(f"{path}: {len(frame)} row(s); pairs need at least 2")
    energy = pd.to_numeric(frame[energy_column], errors="coerce").to_numpy(float)
    bad = np.flatnonzero(~np.isfinite(energy))
    if len(bad):
        raise DataFileError(f"{path}: column {energy_column!r} is not a finite number in {len(bad)} row(s), "
                            f"e.g. rows {bad[:3].tolist()} ({frame[energy_column].iloc[bad[:3]].tolist()}); "
                            "give invalid samples a finite penalty energy")
    absent = np.flatnonzero(frame[sequence_column].isna().to_numpy())
    if len(absent):
        raise DataFileError(f"{path}: column {sequence_column!r} is empty (null) in {len(absent)} row(s), "
                            f"e.g. rows {absent[:3].tolist()}")
    out = pd.DataFrame({"sequence": frame[sequence_column].astype(str), "energy": energy})
    out["valid"] = _booleans(frame["valid"], path) if "valid" in frame.columns else True
    if "ref_logprob" in frame.columns:
        out["ref_logprob"] = pd.to_numeric(frame["ref_logprob"], errors="coerce").to_numpy(float)
        if not np.isfinite(out["ref_logprob"]).all():
            raise DataFileError(f"{path}: column 'ref_logprob' has non-finite values")
    out = _resolve_duplicates(out, path, duplicates)  # keeps the frame's row labels
    if "input_ids" in frame.columns:
        try:
            out["input_ids"] = [list(map(int, ids)) for ids in frame["input_ids"].loc[out.index]]
        except (TypeError, ValueError) as err:
            raise DataFileError(f"{path}: column 'input_ids' must hold lists of token ids (as OfflineAlignment's "
                                "Parquet does); drop the column to have the sequences tokenised") from err
    else:
        out["input_ids"] = _encode(list(out["sequence"]), out["valid"].to_numpy(bool), tokenizer, path)
        dropped = out["input_ids"].isna()
        if dropped.any():
            log.warning("%s: %d invalid row(s) cannot be tokenised and are left out", path, int(dropped.sum()))
            out = out[~dropped]
            if len(out) < 2:
                raise DataFileError(f"{path}: fewer than 2 rows can be tokenised; pairs need at least 2")
    return out.reset_index(drop=True)


def _resolve_duplicates(out: pd.DataFrame, path: Path, rule: str) -> pd.DataFrame:
    """Apply the ``duplicates`` rule of :func:`read_scored_samples` to sequences whose rows disagree."""
    repeated = out[out["sequence"].duplicated(keep=False)]
    if repeated.empty:
        return out
    groups = repeated.groupby("sequence", sort=False)
    energy_differs = groups["energy"].nunique() > 1
    valid_differs = groups["valid"].nunique() > 1
    conflicting = energy_differs.index[energy_differs | valid_differs]
    if not len(conflicting):
        return out
    rows = out["sequence"].isin(conflicting)
    examples = "; ".join(f"{seq!r}: energies {groups.get_group(seq)['energy'].tolist()}"
                         for seq in conflicting[:3])
    message = (f"{path}: {len(conflicting)} sequence(s) appear in {int(rows.sum())} rows with different "
               f"energies or valid flags ({examples})")
    if rule == "error":
        raise DataFileError(f"{message}; keep one row per sequence, or set duplicates: first (keep each "
                            "sequence's first row) or duplicates: mean (average its energies)")
    if rule == "mean":
        if valid_differs.any():
            raise DataFileError(f"{path}: {int(valid_differs.sum())} sequence(s) are marked both valid and invalid "
                                f"(e.g. {valid_differs.index[valid_differs][:3].tolist()}); duplicates: mean "
                                "cannot average those")
        out = out.assign(energy=out.groupby("sequence", sort=False)["energy"].transform("mean"))
    drop = rows & out["sequence"].duplicated()
    log.warning("%s; duplicates: %s keeps one row for each (%s), %d row(s) dropped", message, rule,
                "the first" if rule == "first" else "the mean energy", int(drop.sum()))
    return out[~drop]


def _booleans(column: pd.Series, path: Path) -> np.ndarray:
    if column.dtype == bool:
        return column.to_numpy()
    text = column.astype(str).str.strip().str.lower()
    unknown = ~text.isin(TRUE | FALSE)
    if unknown.any():
        raise DataFileError(f"{path}: column 'valid' must be true/false, got {column[unknown].iloc[:3].tolist()}")
    return text.isin(TRUE).to_numpy()


def _encode(sequences: list[str], valid: np.ndarray, tokenizer, path: Path) -> list[list[int] | None]:
    """Token ids with ``<bos>``/``<eos>``, as the sampler writes them; ``None`` for a row that cannot
    be encoded, which the file must mark invalid."""
    ids: list[list[int] | None] = []
    for k, sequence in enumerate(sequences):
        try:
            if not sequence:
                raise TokenizationError("empty sequence")
            ids.append(encode_checked(tokenizer, [sequence])[0])
        except TokenizationError as error:
            if valid[k]:
                raise DataFileError(f"{path}: row {k} ({sequence!r}) is marked valid but cannot be tokenised: "
                                    f"{error}") from error
            ids.append(None)
    return ids


def sampling_validation_loader() -> DataLoader:
    """One dummy batch: an alignment module's validation step samples and scores the policy itself,
    and needs only to be called once."""
    return DataLoader(TensorDataset(torch.zeros(1)), batch_size=1)


class PairStream(IterableDataset):
    """Batches ``(i, j)`` of pair rows for one rank, split between DataLoader workers."""

    def __init__(self, i: np.ndarray, j: np.ndarray, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.i, self.j = np.asarray(i, np.int64), np.asarray(j, np.int64)
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.epoch, self.skip = 0, 0

    def batches(self) -> list[np.ndarray]:
        return rank_batches(len(self.i), self.batch_size, self.rank, self.world_size, self.epoch, self.seed, True)

    def __len__(self) -> int:
        return len(rank_batches(len(self.i), self.batch_size, 0, self.world_size, 0, 0, False))

    def __iter__(self):
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        for b, rows in enumerate(self.batches()):
            if b >= self.skip and (b - self.skip) % n_workers == worker:
                yield torch.from_numpy(self.i[rows]), torch.from_numpy(self.j[rows])


class ScoredPairsDataModule(ResumableStreamMixin, L.LightningDataModule):
    """Scored sequences from a file, and batches of pairs of them (see the module docstring).

    Args:
        path: the scored samples (CSV/TSV/Parquet).
        tokenizer: encodes the sequences when the file has no ``input_ids``; ``main.py`` links it
            from the model's.
        sequence_column / energy_column: where the sequence and its energy are (sequences by
            default: the one column named like them, ``sequence``, ``smiles``, …).
        duplicates: a sequence in several rows with different energies is an error (``error``),
            or keeps its ``first`` row, or the ``mean`` energy (see :func:`read_scored_samples`).
        pairs_per_batch / max_pairs / seed: pairs per step on each rank, pairs used (``None`` = all)
            and the shuffling seed (epoch ``e`` uses the permutation seeded by ``(seed, e)``) when no
            alignment module chooses them; ``OfflineAlignment`` passes its own.
        num_workers: DataLoader workers per rank.
    """

    def __init__(self, path: str, tokenizer: str = "smiles", sequence_column: str | None = None,
                 energy_column: str = "energy", pairs_per_batch: int = 64, max_pairs: int | None = 20000,
                 seed: int = 0, num_workers: int = 0, duplicates: str = "error"):
        super().__init__()
        if duplicates not in DUPLICATES:
            raise ValueError(f"duplicates must be one of {DUPLICATES}, got {duplicates!r}")
        if pairs_per_batch < 1:
            raise ValueError(f"pairs_per_batch must be >= 1, got {pairs_per_batch}")
        self.path, self.tokenizer_spec = path, tokenizer
        self.sequence_column, self.energy_column, self.duplicates = sequence_column, energy_column, duplicates
        self.pairs_per_batch, self.max_pairs, self.seed, self.num_workers = pairs_per_batch, max_pairs, seed, num_workers
        self.frame: pd.DataFrame | None = None
        self.pair_i: np.ndarray | None = None
        self.pair_j: np.ndarray | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.frame is None:
            self.frame = read_scored_samples(self.path, load_tokenizer(self.tokenizer_spec),
                                             self.sequence_column, self.energy_column, self.duplicates)
            log.info("%s: %d scored samples (%d valid)", self.path, len(self.frame), int(self.frame["valid"].sum()))

    def set_pairs(self, i: np.ndarray, j: np.ndarray, pairs_per_batch: int | None = None,
                  seed: int | None = None) -> None:
        """The pairs to deal out (rows of :attr:`frame`), as the alignment module chose them, and its
        batch size and seed, which then override this module's own."""
        i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
        if len(i) != len(j) or (i == j).any():
            raise ValueError("pairs must be two equally long index arrays with no sample paired with itself")
        self.pair_i, self.pair_j = i, j
        self.pairs_per_batch = pairs_per_batch or self.pairs_per_batch
        self.seed = self.seed if seed is None else seed

    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        if self.pair_i is None:
            self.setup()
            self.set_pairs(*make_pairs(list(self.frame["sequence"]), self.max_pairs, self.seed))
        return self.pair_i, self.pair_j

    def train_dataloader(self) -> StreamingLoader:
        i, j = self._pairs()
        rank, world = self._rank()
        if len(i) < world:
            raise ValueError(f"{len(i)} pairs cannot be shared by {world} ranks")
        return self._train_loader(PairStream(i, j, self.pairs_per_batch, self.seed, rank, world))

    def val_dataloader(self) -> DataLoader:
        # Lightning takes every loader from an attached DataModule: without this, the alignment
        # module's validation (sampling, metrics, histograms, summary.json) would silently not run.
        return sampling_validation_loader()

    def _stream_settings(self) -> dict:
        """The pairs, their batch size, seed and ranks decide the order of the batches; the pairs
        are counted (``None`` until the alignment module or the first loader chose them)."""
        return {"n_pairs": None if self.pair_i is None else len(self.pair_i), "seed": self.seed,
                "pairs_per_batch": self.pairs_per_batch, "world_size": self._rank()[1]}
