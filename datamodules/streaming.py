"""Deterministic, sharded, resumable streaming of tokenised sequence files.

Two pieces:

:class:`TokenizedCorpus`
    A line-oriented file tokenised once into a flat token array plus offsets (``.npy`` files,
    memory-mapped, cached on disk and keyed by the file, the reader options and the tokenizer).
    Invalid records (unknown tokens, empty lines) and records longer than ``max_tokens`` are
    counted and logged at build time and never reach a batch. Tokenising once makes batches
    cheap: collating is a vectorised gather, far faster than a GPU consumes it.

:class:`BatchStream`
    An ``IterableDataset`` of padded batches. For epoch ``e`` the records are permuted by a
    generator seeded with ``(seed, e)``; rank ``r`` of ``W`` takes ``perm[r::W]`` and cuts it
    into the *same number of batches on every rank* (sizes differ by at most one record), so
    DDP ranks never wait on each other and every record is seen exactly once per epoch. Within
    a rank, batch ``j`` is built by DataLoader worker ``(j - skip) % num_workers``; the
    DataLoader's round-robin then yields batches in exactly the order ``skip, skip+1, …``,
    which is what makes a mid-epoch resume (``skip`` = batches already trained) reproduce the
    rest of the interrupted epoch record for record.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from datamodules.sources import DataFileError, read_records
from networks.files import cache_root, honour_umask
from networks.randomized_smiles import randomized_smiles
from networks.ring_labels import fresh_ring_labels
from networks.tokenizers import TokenizationError, encode_checked

log = logging.getLogger(__name__)

# Lightning warns about every IterableDataset with a __len__ that DataLoader workers might duplicate
# data. Ours (BatchStream, PairStream) deal each worker its own batches and their length is the
# rank's batch count, so the warning is a false alarm that every training run would print.
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")

CORPUS_FORMAT_VERSION = 1
_CHUNK = 8192


def default_cache_dir() -> Path:
    return cache_root() / "corpora"


#: Record rewrites a :class:`RecordFile` can apply before tokenising, by name (``transform:`` in a
#: datamodule's config). Each maps one record to one record and raises ``ValueError`` for a record
#: it cannot rewrite, which is then counted invalid and skipped like an untokenisable one.
RECORD_TRANSFORMS: dict[str, Callable[[str], str]] = {
    "fresh_ring_labels": fresh_ring_labels,  # networks/ring_labels.py
}


def _transformed(records: Iterable[str], transform: Callable[[str], str]) -> Iterator[str]:
    for record in records:
        try:
            yield transform(record)
        except ValueError:
            yield ""  # empty: counted invalid at encoding, never trained on


def check_transform(name: str | None) -> str | None:
    """``name`` if it is None or a :data:`RECORD_TRANSFORMS` rewrite, else a ValueError."""
    if name is not None and name not in RECORD_TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; choose from {sorted(RECORD_TRANSFORMS)}")
    return name


def check_randomized(n: int) -> int:
    """``n`` if it is a valid ``randomized`` setting (randomized SMILES per record, 0: off)."""
    if n < 0:
        raise ValueError(f"randomized must be >= 0 (randomized SMILES per record; 0: off), got {n}")
    return n


def _randomize_chunk(job: tuple[list[str], int, int, int]) -> list[str]:
    records, first, n, seed = job
    out: list[str] = []
    for number, record in enumerate(records, first):
        # each record its own seed, so a record's forms do not depend on the records before it
        # (nor on how the records are cut into chunks or spread over processes)
        out.extend(randomized_smiles(record, n, seed=seed * 1_000_003 + number) or [""])  # "": invalid
    return out


def _randomized(records: Iterable[str], n: int, seed: int) -> Iterator[str]:
    """Each record as ``n`` randomized SMILES, in record order, RDKit spread over the CPU's cores
    (1.4M strings of ChEMBL's 140k: ≈ 2 min on one core)."""
    records = iter(records)
    chunks = iter(lambda: list(itertools.islice(records, _CHUNK)), [])
    first = next(chunks, [])
    jobs = ((chunk, start, n, seed) for start, chunk in zip(itertools.count(0, _CHUNK),
                                                           itertools.chain([first], chunks)))
    workers = min(os.cpu_count() or 1, 16)
    if workers == 1 or len(first) < _CHUNK:  # a small file: not worth starting processes
        for job in jobs:
            yield from _randomize_chunk(job)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for forms in pool.imap(_randomize_chunk, jobs):
            yield from forms


@dataclass(frozen=True)
class RecordFile:
    """A file of sequences and how to read it (see :func:`datamodules.sources.read_records`)."""

    path: str
    column: str | None = None
    where: dict = field(default_factory=dict)
    exclude: dict = field(default_factory=dict)
    # Keep a seeded, uniformly random ``limit`` of the usable records (a quick val set), stored
    # in a seeded random order so that any prefix of it (``limit_val_batches``) is uniform too.
    # Not the first ``limit``: data files are often ordered (MOSES's test set is; its first
    # 10,000 molecules are ≈ 4 FCD from the whole), so a prefix of the file is a biased sample.
    limit: int | None = None
    # the name of a :data:`RECORD_TRANSFORMS` rewrite applied to every record before tokenising
    transform: str | None = None
    # SMILES enumeration: each record replaced by this many randomized SMILES of its molecule
    # (networks/randomized_smiles.py), seeded by ``randomized_seed`` and the record's number;
    # applied before ``transform`` and before ``limit``'s subset. 0: the records as written.
    randomized: int = 0
    randomized_seed: int = 0

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"{self.path}: limit must be at least 1 record, got {self.limit}")
        check_transform(self.transform)
        check_randomized(self.randomized)

    def records(self) -> Iterator[str]:
        records = read_records(self.path, self.column, self.where or None, self.exclude or None)
        if self.randomized:
            records = _randomized(records, self.randomized, self.randomized_seed)
        if self.transform is None:
            return records
        return _transformed(records, RECORD_TRANSFORMS[self.transform])

    def fingerprint(self) -> dict:
        path = Path(self.path).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"data file not found: {path}")
        stat = path.stat()
        return dict(path=str(path), size=stat.st_size, mtime_ns=stat.st_mtime_ns,
                    # None: the column is picked by name (sources.sequence_column); caches made when
                    # it meant "the first column" must not be reused
                    column=self.column or "by-name", where=sorted((self.where or {}).items()),
                    exclude=sorted((self.exclude or {}).items()), limit=self.limit,
                    # names the subset's algorithm and seed: change it if either changes
                    **({"subset": _Reservoir.VERSION} if self.limit is not None else {}),
                    # only when set, so caches built before transforms existed keep their keys
                    **({"transform": self.transform} if self.transform is not None else {}),
                    **({"randomized": self.randomized, "randomized_seed": self.randomized_seed}
                       if self.randomized else {}))


def _tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]


def _encode_chunk(tokenizer, chunk: list[str]) -> list[list[int] | None]:
    """Encode a chunk; a record that fails to encode, or is empty, becomes ``None`` (invalid)."""
    try:
        return [ids if record else None for record, ids in zip(chunk, encode_checked(tokenizer, chunk))]
    except TokenizationError:
        out: list[list[int] | None] = []
        for record in chunk:
            try:
                out.append(encode_checked(tokenizer, [record])[0] if record else None)
            except TokenizationError:
                out.append(None)
        return out


class TokenizedCorpus:
    """Token ids of every valid record of a file, memory-mapped from a cache directory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        meta_path = self.directory / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.directory} is not a built corpus (no meta.json)")
        self.meta = json.loads(meta_path.read_text())
        self._tokens: np.ndarray | None = None
        self._offsets: np.ndarray | None = None

    # Memory maps are re-opened in each process instead of being pickled into DataLoader workers.
    def __getstate__(self) -> dict:
        return {"directory": self.directory, "meta": self.meta, "_tokens": None, "_offsets": None}

    @property
    def tokens(self) -> np.ndarray:
        if self._tokens is None:
            self._tokens = np.load(self.directory / "tokens.npy", mmap_mode="r")
        return self._tokens

    @property
    def offsets(self) -> np.ndarray:
        if self._offsets is None:
            self._offsets = np.load(self.directory / "offsets.npy")
        return self._offsets

    def __len__(self) -> int:
        return int(self.meta["n_records"])

    def token_ids(self, index: int) -> np.ndarray:
        return np.asarray(self.tokens[self.offsets[index]: self.offsets[index + 1]])

    @classmethod
    def build(
        cls,
        source: RecordFile,
        tokenizer: PreTrainedTokenizerBase,
        max_tokens: int = 200,
        cache_dir: str | Path | None = None,
        progress: bool = True,
    ) -> "TokenizedCorpus":
        """Tokenise ``source`` once, or reuse the cached result of an identical earlier build.

        The cache entry is written to a temporary directory and renamed into place only when
        complete, so an interrupted build never leaves a corpus that looks finished.
        """
        key = dict(format=CORPUS_FORMAT_VERSION, source=source.fingerprint(),
                   tokenizer=_tokenizer_fingerprint(tokenizer), max_tokens=max_tokens)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        root = Path(cache_dir) if cache_dir else default_cache_dir()
        final = root / f"{Path(source.path).name}-{digest}"
        if (final / "meta.json").is_file():
            return cls(final)
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
        honour_umask(tmp, directory=True)  # mkdtemp's 0700 would stay on the cache folder
        try:
            meta = cls._write(source, tokenizer, max_tokens, tmp, progress)
            meta["key"] = key
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            try:
                os.rename(tmp, final)
            except OSError:  # another process finished the same corpus first
                if not (final / "meta.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls(final)

    @staticmethod
    def _write(source, tokenizer, max_tokens, out: Path, progress: bool) -> dict:
        dtype = np.uint16 if len(tokenizer) < 2**16 else np.int32
        token_chunks: list[np.ndarray] = []  # one flat array per chunk keeps memory compact
        length_chunks: list[np.ndarray] = []
        line_chunks: list[np.ndarray] = []

        def keep(ids: list[list[int]], lines: list[int]) -> None:
            token_chunks.append(np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype))
            length_chunks.append(np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)))
            line_chunks.append(np.asarray(lines, dtype=np.int64))

        n_kept = n_read = n_invalid = n_long = 0
        invalid_examples: list[str] = []
        bar = tqdm(desc=f"tokenising {Path(source.path).name}", unit=" records", disable=not progress,
                   mininterval=1.0)
        records = source.records()
        reservoir = _Reservoir(source.limit) if source.limit is not None else None
        done = False
        while not done:
            chunk = list(itertools.islice(records, _CHUNK))
            done = len(chunk) < _CHUNK
            kept_ids, kept_lines = [], []
            for i, ids in enumerate(_encode_chunk(tokenizer, chunk)):
                if ids is None:
                    n_invalid += 1
                    if len(invalid_examples) < 5:
                        invalid_examples.append(f"record {n_read + i}: {chunk[i][:80]!r}")
                elif len(ids) > max_tokens:
                    n_long += 1
                else:
                    kept_ids.append(ids)
                    kept_lines.append(n_read + i)
            if reservoir is not None:
                reservoir.offer(kept_ids, kept_lines)
            elif kept_ids:
                keep(kept_ids, kept_lines)
                n_kept += len(kept_ids)
            n_read += len(chunk)
            bar.update(len(chunk))
        bar.close()
        n_usable = n_kept
        if reservoir is not None:
            kept_ids, kept_lines = reservoir.shuffled()
            n_usable, n_kept = reservoir.n_seen, len(kept_ids)
            if kept_ids:
                keep(kept_ids, kept_lines)
        if not n_kept:
            raise DataFileError(
                f"{source.path}: none of {n_read} records is usable ({n_invalid} invalid, "
                f"{n_long} longer than {max_tokens} tokens); examples: {invalid_examples}"
            )
        lengths = np.concatenate(length_chunks)
        offsets = np.zeros(n_kept + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        np.save(out / "tokens.npy", np.concatenate(token_chunks))
        np.save(out / "offsets.npy", offsets)
        np.save(out / "line_numbers.npy", np.concatenate(line_chunks))
        if n_invalid or n_long:
            log.warning(
                "%s: skipped %d invalid record(s) and %d longer than %d tokens out of %d; "
                "first invalid: %s", source.path, n_invalid, n_long, max_tokens, n_read, invalid_examples,
            )
        return dict(n_read=n_read, n_records=n_kept, n_usable=n_usable, n_invalid=n_invalid,
                    n_too_long=n_long, max_tokens=max_tokens, invalid_examples=invalid_examples)


class _Reservoir:
    """A seeded uniform sample of ``size`` items from a stream of unknown length (Algorithm R).

    The first ``size`` items fill the slots; after that, item ``t`` (0-based) replaces slot
    ``j ~ U{0..t}`` when ``j < size``. The draws for a whole chunk are made at once, so the cost
    per record is a vectorised draw, not a Python call, and the subset does not depend on how the
    stream is chunked. The seed is fixed: the subset is part of what a ``limit`` means, the same
    on every run — and part of the corpus cache key through :attr:`VERSION`.
    """

    SEED = 0
    VERSION = f"uniform-reservoir-shuffled-v2-seed{SEED}"

    def __init__(self, size: int):
        self.size = size
        self.rng = np.random.default_rng(self.SEED)
        self.ids: list = []
        self.lines: list[int] = []
        self.n_seen = 0

    def offer(self, ids: list, lines: list[int]) -> None:
        fill = min(len(ids), self.size - len(self.ids))
        self.ids.extend(ids[:fill])
        self.lines.extend(lines[:fill])
        rest = len(ids) - fill
        if rest:
            seen = self.n_seen + fill + np.arange(rest)
            slots = self.rng.integers(0, seen + 1)
            for k in np.flatnonzero(slots < self.size):
                self.ids[slots[k]] = ids[fill + k]
                self.lines[slots[k]] = lines[fill + k]
        self.n_seen += len(ids)

    def shuffled(self) -> tuple[list, list[int]]:
        """The sample in a seeded random order. Not the slot order: the first ``k`` slots never
        hold items ``k … size−1``, so a prefix of the slots is not a uniform sample; nor file
        order, whose prefixes are the file's start again."""
        order = np.random.default_rng([self.SEED, 1]).permutation(np.argsort(self.lines, kind="stable"))
        return [self.ids[i] for i in order], [self.lines[i] for i in order]


def rank_batches(n_records: int, batch_size: int, rank: int, world_size: int, epoch: int,
                 seed: int, shuffle: bool, lengths: np.ndarray | None = None,
                 group_by_length: int = 0) -> list[np.ndarray]:
    """Record indices of each batch that ``rank`` processes in ``epoch`` (see module docstring).

    ``group_by_length = g > 0`` (with the records' ``lengths``) cuts the rank's shuffled order into
    windows of ``g × batch_size`` records, sorts each window by length and deals out the batches
    in a seeded random order: a batch then holds records of similar length, so little of it is
    padding (random ChEMBL batches of 128 are ≈ 1.9× their tokens once padded). Each epoch still
    sees every record once, the batch count and sizes are those of ``g = 0``, and the order is a
    function of ``(seed, epoch)``, so a mid-epoch resume reproduces it.
    """
    if group_by_length < 0:
        raise ValueError(f"group_by_length must be >= 0, got {group_by_length}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(n_records)
    else:
        order = np.arange(n_records)
    if n_records < world_size:
        raise ValueError(f"{n_records} records cannot be shared by {world_size} ranks")
    mine = order[rank::world_size]
    n_batches = -(-(-(-n_records // world_size)) // batch_size)  # ceil(ceil(N / W) / B)
    # the same count on every rank, and never more batches than the smallest share has records
    n_batches = min(n_batches, n_records // world_size)
    if not (shuffle and group_by_length):
        return list(np.array_split(mine, n_batches))
    if lengths is None or len(lengths) != n_records:
        raise ValueError("group_by_length needs one length per record")
    window = group_by_length * batch_size
    grouped = np.concatenate([chunk[np.argsort(lengths[chunk], kind="stable")]
                              for chunk in np.array_split(mine, max(1, -(-len(mine) // window)))])
    batches = np.array_split(grouped, n_batches)
    deal = np.random.default_rng([seed, epoch, 1]).permutation(n_batches)
    return [batches[j] for j in deal]


def collate(corpus: TokenizedCorpus, indices: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` for the given records, vectorised."""
    starts = corpus.offsets[indices]
    lengths = corpus.offsets[indices + 1] - starts
    width = int(lengths.max()) if len(indices) else 0
    cols = np.arange(width)
    mask = cols[None, :] < lengths[:, None]
    gather = np.where(mask, starts[:, None] + cols[None, :], 0)
    ids = np.where(mask, corpus.tokens[gather.ravel()].reshape(gather.shape), pad_id)
    return {
        "input_ids": torch.from_numpy(ids.astype(np.int64)),
        "attention_mask": torch.from_numpy(mask.astype(np.int64)),
        "record_index": torch.from_numpy(indices.astype(np.int64)),
    }


class BatchStream(IterableDataset):
    """Padded batches of a :class:`TokenizedCorpus`, sharded over ranks and workers."""

    def __init__(self, corpus: TokenizedCorpus, batch_size: int, pad_id: int, seed: int = 0,
                 shuffle: bool = True, rank: int = 0, world_size: int = 1, group_by_length: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if group_by_length < 0:
            raise ValueError(f"group_by_length must be >= 0, got {group_by_length}")
        self.group_by_length = group_by_length
        self.corpus = corpus
        self.batch_size = batch_size
        self.pad_id = pad_id
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.skip = 0

    def batches(self) -> list[np.ndarray]:
        lengths = np.diff(self.corpus.offsets) if self.group_by_length and self.shuffle else None
        return rank_batches(len(self.corpus), self.batch_size, self.rank, self.world_size,
                            self.epoch, self.seed, self.shuffle, lengths, self.group_by_length)

    def __len__(self) -> int:
        return len(rank_batches(len(self.corpus), self.batch_size, 0, self.world_size, 0, 0, False))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        for j, indices in enumerate(self.batches()):
            if j >= self.skip and (j - self.skip) % n_workers == worker:
                yield collate(self.corpus, indices, self.pad_id)


def stream_position(trainer) -> dict[str, int]:
    """Epoch and batches already trained in it, for a DataModule's ``state_dict``; at the end of an
    epoch, the start of the next one (the trainer still reports the finished epoch then)."""
    done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    epoch = trainer.current_epoch
    if done >= trainer.num_training_batches:
        epoch, done = epoch + 1, 0
    return {"epoch": epoch, "batches_done": done}


class ResumableStreamMixin:
    """Rank, epoch and mid-epoch resumption for a LightningDataModule that streams its training
    batches through a :class:`StreamingLoader`.

    Why a mixin: :class:`~datamodules.sequences.SequenceDataModule` (token batches) and
    :class:`~datamodules.scored_pairs.ScoredPairsDataModule` (pairs of rows) stream different
    things but restore the same way: the checkpoint holds the epoch and the batches already
    trained in it, and the next training loader skips those once. The host sets ``num_workers``
    and says, in :meth:`_stream_settings`, which of its settings a resumed run must share for the
    rest of the epoch to match an uninterrupted one (a mismatch is a warning, not an error: the
    user may change them on purpose).
    """

    _resume: dict | None = None

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _stream_settings(self) -> dict:
        """Settings that fix the order of the training batches; ``None`` values are not compared."""
        return {"world_size": self._rank()[1]}

    def _train_loader(self, stream) -> "StreamingLoader":
        epoch_fn = (lambda: self.trainer.current_epoch) if self.trainer is not None else None
        return StreamingLoader(stream, self.num_workers, epoch_fn, self._take_resume)

    def _take_resume(self) -> tuple[int, int] | None:
        resume, self._resume = self._resume, None
        return None if resume is None else (int(resume["epoch"]), int(resume["batches_done"]))

    def state_dict(self) -> dict:
        """The position in the training stream (epoch, batches already trained in it) and the
        settings it depends on."""
        if self.trainer is None:
            return {}
        return {**stream_position(self.trainer), **self._stream_settings()}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        for key, value in self._stream_settings().items():
            if value is not None and state.get(key) not in (None, value):
                log.warning("resuming with %s=%s, the checkpoint used %s: the rest of the interrupted "
                            "epoch will not match an uninterrupted run", key, value, state[key])
        self._resume = {"epoch": state["epoch"], "batches_done": state["batches_done"]}


class StreamingLoader(DataLoader):
    """A DataLoader over a :class:`BatchStream` that tells the stream its epoch on each ``iter``.

    ``epoch_fn`` returns the trainer's epoch; ``resume_fn()`` returns ``(epoch, batches already
    trained)`` once after a restore (``None`` otherwise), which takes precedence: when a run resumes
    from a checkpoint taken at the very end of an epoch, the trainer still reports that epoch while
    the loader is created, but the stream must start the next one.
    """

    def __init__(self, stream: BatchStream, num_workers: int = 0,
                 epoch_fn: Callable[[], int] | None = None,
                 resume_fn: Callable[[], tuple[int, int] | None] | None = None, **kwargs):
        # An own generator: each ``iter`` draws a worker base seed, and drawing it from the global
        # RNG would shift the dropout stream of a resumed run relative to an uninterrupted one.
        kwargs.setdefault("generator", torch.Generator().manual_seed(0))
        super().__init__(stream, batch_size=None, num_workers=num_workers,
                         persistent_workers=False, **kwargs)
        self._epoch_fn = epoch_fn
        self._resume_fn = resume_fn
        self._iterations = 0

    def __iter__(self):
        stream: BatchStream = self.dataset
        stream.epoch = self._epoch_fn() if self._epoch_fn else self._iterations
        stream.skip = 0
        resumed = self._resume_fn() if self._resume_fn else None
        if resumed is not None:
            stream.epoch, stream.skip = resumed
        self._iterations += 1
        return super().__iter__()

    # Lightning treats a loader with these two methods as resumable mid-epoch (and warns otherwise).
    # This one is: ``resume_fn`` hands it the position, which the DataModule saves because it needs
    # the trainer's batch count. So the loader itself has nothing to save.
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def iterate_records(corpus: TokenizedCorpus, batches: Iterable[dict]) -> list[int]:
    """Record indices in the order the batches deliver them (a test and debugging helper)."""
    return [int(i) for batch in batches for i in batch["record_index"]]
