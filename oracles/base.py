"""The oracle interface: a batch of sequences in, a batch of energies (lower is better) out.

Every oracle returns :class:`Scores`: float64 energies, a validity mask, and the raw property
values. Invalid inputs (unparsable SMILES, empty strings, ``None``, properties that come out NaN)
never raise and never produce NaN: they get the oracle's ``penalty`` energy and ``valid=False``.
A caller error (not a list of sequences) raises.

:class:`MoleculeOracle` holds the machinery molecular oracles share: canonicalise each SMILES,
score each distinct canonical molecule once per batch, and keep an LRU cache of raw values keyed
by canonical SMILES (the oracle's configuration is fixed per instance, so the cache key needs
nothing else). Subclasses implement only ``compute(mol) -> float``; the user-supplied scorers of
``oracles.custom`` reuse the same machinery on canonical strings of any ``domain``.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from oracles.canonical import CANONICALISERS, canonical_smiles
from oracles.transforms import Identity, Transform

log = logging.getLogger(__name__)

MAX_SMILES_LENGTH = 2000  # default ``max_length``: longer strings are invalid without being parsed


def canonical_text(text: str) -> str | None:
    """Any non-empty one-line string, as it is (the ``text`` domain: no canonicalisation)."""
    return text if isinstance(text, str) and text and "\n" not in text and "\r" not in text else None


#: the ``domain`` of an oracle's inputs → its canonicaliser (``None`` = invalid)
DOMAINS = {**CANONICALISERS, "text": canonical_text}


@dataclass
class Scores:
    """What an oracle says about a batch."""

    energies: torch.Tensor  # [n] or [n, k] float64, lower is better; penalty where invalid
    valid: torch.Tensor  # [n] bool
    values: dict[str, np.ndarray] = field(default_factory=dict)  # raw properties, NaN where invalid
    canonical: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return self.valid.numel()


def invalid_preferred(energies: np.ndarray, valid: np.ndarray, names: Sequence[str]) -> list[str]:
    """One message per energy column in which invalid samples score better (lower) than the valid
    samples' median — empty when the penalty is where it should be.

    Why: an oracle's penalty is an energy like any other, and a penalty below the valid energies
    teaches the policy to emit invalid sequences — silently, since every number still looks fine.
    It happens by accident, e.g. a transform such as −log P that maps the valid value P = 0 to
    infinity, so those samples fall to a penalty of 0. ``energies`` is [n] or [n, len(names)].
    """
    energies = np.asarray(energies, dtype=float).reshape(len(valid), -1)
    valid = np.asarray(valid, dtype=bool)
    if valid.all() or not valid.any():
        return []
    messages = []
    for name, column in zip(names, energies.T):
        invalid_mean, valid_median = float(column[~valid].mean()), float(np.median(column[valid]))
        if invalid_mean < valid_median:
            messages.append(f"oracle {name!r}: invalid samples have energy {invalid_mean:.4g}, below the valid "
                            f"samples' median {valid_median:.4g} (lower is better), so alignment will favour "
                            "invalid output; give the oracle a penalty above the valid energies (and check "
                            "its transform)")
    return messages


def _check_batch(sequences) -> list:
    if isinstance(sequences, str) or not isinstance(sequences, Sequence):
        raise TypeError(f"an oracle scores a list of sequences, got {type(sequences).__name__}")
    return list(sequences)


class Oracle:
    """Base class. ``name`` labels logs and files; ``penalty`` is the energy of invalid inputs."""

    name: str = "oracle"

    def __init__(self, transform: Transform | None = None, penalty: float = 10.0, name: str | None = None):
        if not math.isfinite(penalty):
            raise ValueError(f"penalty energy must be finite, got {penalty}")
        self.transform = transform or Identity()
        self.penalty = float(penalty)
        if name:
            self.name = name

    def __call__(self, sequences: Sequence[str]) -> Scores:
        raise NotImplementedError

    def scores_from_values(self, values: np.ndarray, canonical: list) -> Scores:
        """Raw values (NaN where unmeasurable) → energies; anything non-finite gets the penalty."""
        energies = self.transform(values)
        valid = np.isfinite(values) & np.isfinite(energies)
        energies = np.where(valid, energies, self.penalty)
        return Scores(torch.from_numpy(energies.astype(np.float64)), torch.from_numpy(valid),
                      {self.name: values}, canonical)


class OracleWorkerError(RuntimeError):
    """An oracle's scoring worker process died again after one retry in a fresh pool, or a batch
    took longer than the oracle's ``worker_timeout``."""


class OracleFailedError(RuntimeError):
    """A user-supplied scorer failed too many times in a row (``max_consecutive_failures``): the
    run stops rather than train on penalty energies."""


def _score_chunk(oracle: "MoleculeOracle", chunk: list[str]) -> list[tuple[str | None, float]]:
    return oracle.score_uncached(chunk)


_NOT_PLAIN = object()


def _plain(value):
    """``value`` as plain data (str/int/float/bool, lists and key-sorted dicts of them), or
    ``_NOT_PLAIN``."""
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in items) else items
    if isinstance(value, dict):
        items = {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in items.values()) else items
    return _NOT_PLAIN


class MoleculeOracle(Oracle):
    """A property of a molecule computed with RDKit, turned into an energy by ``transform``.

    Args:
        transform: raw value → energy.
        penalty: energy of invalid molecules.
        cache_size: entries kept in each LRU cache (input string → canonical SMILES, and
            canonical SMILES → raw value); a warm batch never touches RDKit.
        n_workers: processes used for uncached molecules (1 = in process). The pool is made on
            first use, one per process (so one per DDP rank), and is not pickled. A worker that
            dies mid-batch (killed, out of memory, a crash in native code) costs one retry of the
            batch in a fresh pool; a second death raises :class:`OracleWorkerError` naming the oracle.
        worker_timeout: seconds a batch may take in the worker pool (``None``: no limit). A worker
            stuck in native code (an RDKit call that never returns) would otherwise hang the run —
            and, under DDP, every rank waiting for it. On timeout the workers are killed and
            :class:`OracleWorkerError` names the oracle; the batch is not retried, since the
            molecule that hung would hang again.
        disk_cache: an SQLite file that keeps raw values across runs, keyed by the oracle's
            configuration (class and its settings, not the transform) and canonical SMILES.
        max_length: inputs longer than this many characters are invalid (penalty) without being
            parsed — a guard against pathological strings that take RDKit minutes.
    """

    parallel_threshold = 128  # fewer uncached molecules than this are scored in process
    progress_threshold = 1000  # a progress bar (on a terminal) when the pool scores this many
    domain = "smiles"  # what the inputs are (a key of DOMAINS); the user-supplied oracles take it as a setting
    # The default lives on the class and only a different value on the instance, so that the
    # settings recorded with stored samples (datamodules.reference_samples.describe) stay what they were before
    # max_length was a parameter.
    max_length = MAX_SMILES_LENGTH

    def __init__(self, transform: Transform | None = None, penalty: float = 10.0, name: str | None = None,
                 cache_size: int = 200_000, n_workers: int = 1, disk_cache: str | None = None,
                 worker_timeout: float | None = None, max_length: int = MAX_SMILES_LENGTH):
        super().__init__(transform, penalty, name)
        if worker_timeout is not None and not worker_timeout > 0:
            raise ValueError(f"worker_timeout must be a positive number of seconds or None, got {worker_timeout}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive number of characters, got {max_length!r}")
        if max_length != type(self).max_length:
            self.max_length = max_length
        self.cache_size = cache_size
        self.n_workers = max(1, int(n_workers))
        self.worker_timeout = worker_timeout
        self.disk_cache = disk_cache
        self._canonical: OrderedDict[str, str | None] = OrderedDict()
        self._cache: OrderedDict[str, float] = OrderedDict()
        self._pool = None
        self._sink = None  # while the disk cache is open: saves values as they come (see save_progress)

    def compute(self, mol) -> float:
        raise NotImplementedError

    def compute_batch(self, mols: list) -> np.ndarray:
        """Raw values of RDKit molecules; override for a vectorised property."""
        out = np.empty(len(mols))
        for i, mol in enumerate(mols):
            try:
                out[i] = float(self.compute(mol))
            except Exception:  # an RDKit failure on one molecule is that molecule's problem
                out[i] = np.nan
        return out

    def __getstate__(self) -> dict:  # picklable for DataLoader workers / process pools; no caches
        state = dict(self.__dict__)
        state["_canonical"], state["_cache"], state["_pool"] = OrderedDict(), OrderedDict(), None
        state["_sink"] = None
        return state

    def close(self, kill: bool = False) -> None:
        """Shut the worker pool down; ``kill`` terminates workers still busy (a hung batch)."""
        if self._pool is not None:
            if kill:
                # the executor has no public way to stop a running task: terminate its processes
                for process in list(getattr(self._pool, "_processes", {}).values()):
                    process.terminate()
            self._pool.shutdown(wait=not kill, cancel_futures=True)
            self._pool = None

    def canonical_forms(self, strings: Sequence[str]) -> list[str | None]:
        """The canonical form of each string in the oracle's ``domain``; ``None`` where invalid or
        longer than ``max_length``."""
        canonicalise = canonical_smiles if self.domain == "smiles" else DOMAINS[self.domain]
        return [canonicalise(s) if isinstance(s, str) and len(s) <= self.max_length else None for s in strings]

    def score_uncached(self, strings: Sequence[str]) -> list[tuple[str | None, float | None]]:
        """(canonical SMILES, raw value) for each input string, each distinct molecule once.

        A raw value of ``None`` (user-supplied scorers only) means "no answer this time" — a
        failed batch of an external program, an exception — which gets the penalty now and is
        not cached, so the molecule is scored again when it comes back. NaN is an answer
        ("invalid") and is cached."""
        from rdkit import Chem

        canonical = self.canonical_forms(strings)
        distinct = list(dict.fromkeys(c for c in canonical if c is not None))
        values = dict(zip(distinct, self.compute_batch([Chem.MolFromSmiles(c) for c in distinct])))
        return [(c, values[c] if c is not None else float("nan")) for c in canonical]

    def _new_pool(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(self.n_workers, mp_context=multiprocessing.get_context("fork"))

    def _score_parallel(self, strings: list[str]) -> list[tuple[str | None, float]]:
        if self.n_workers == 1 or len(strings) < self.parallel_threshold:
            return self.score_uncached(strings)
        if self._pool is None:
            self._pool = self._new_pool()
        size = -(-len(strings) // (4 * self.n_workers))
        chunks = [strings[i:i + size] for i in range(0, len(strings), size)]
        for attempt in (1, 2):
            try:
                results = self._pool.map(_score_chunk, [self] * len(chunks), chunks, timeout=self.worker_timeout)
                done = []
                for part in self.progress(results, len(chunks), len(strings) < self.progress_threshold):
                    self.save_progress(part)
                    done.extend(part)
                return done
            except OracleFailedError:  # the user's scorer gives up; the other workers' chunks end as quickly
                self.close()
                raise
            except FuturesTimeout as error:
                self.close(kill=True)
                raise OracleWorkerError(
                    f"oracle {self.name!r} ({type(self).__name__}): a batch of {len(strings)} molecules took "
                    f"longer than worker_timeout = {self.worker_timeout:g} s; the workers were killed. A "
                    "molecule may hang the property calculation: set n_workers: 1 to score in process and "
                    "find it, or raise worker_timeout") from error
            except BrokenProcessPool as error:
                # A worker died (killed, out of memory, or crashed in native code). Not rescored in
                # this process: a molecule that crashes RDKit would then take the run down with it.
                self.close()
                if attempt == 2:
                    raise OracleWorkerError(
                        f"oracle {self.name!r} ({type(self).__name__}): a scoring worker process died twice on "
                        f"the same batch of {len(strings)} molecules ({error}); it was killed (out of memory?) "
                        "or crashed in native code on one of them. Set n_workers: 1 to score in process and "
                        "see the failure") from error
                log.warning("oracle %r: a scoring worker process died; rescoring the batch of %d in a fresh pool",
                            self.name, len(strings))
                self._pool = self._new_pool()
            except Exception as error:  # e.g. the oracle does not pickle: score in process, as n_workers: 1
                log.warning("oracle %r: parallel scoring failed (%s: %s); scoring in process",
                            self.name, type(error).__name__, error)
                self.close()
                return self.score_uncached(strings)

    def save_progress(self, pairs: Sequence[tuple[str | None, float | None]]) -> None:
        """Write (canonical form, raw value) pairs to the disk cache now, when one is open — called
        by slow scorers after each batch, so that what was scored before an interruption is not
        scored again after a restart."""
        if self._sink is not None:
            self._sink(pairs)

    def progress(self, items, total: int, hidden: bool = False):
        """``items`` behind a progress bar named after the oracle — shown on a terminal only, and
        not when ``hidden`` (small batches: an online step should not draw a bar each time)."""
        from tqdm.auto import tqdm

        return tqdm(items, total=total, desc=f"oracle {self.name}", leave=False, disable=True if hidden else None)

    def _remember(self, cache: OrderedDict, key, value) -> None:
        cache[key] = value
        if len(cache) > self.cache_size:
            cache.popitem(last=False)

    #: settings that do not change a raw value, so are not part of the disk cache's key
    cache_insensitive = frozenset({"transform", "penalty", "name", "cache_size", "n_workers", "disk_cache",
                                   "worker_timeout", "max_length"})

    def cache_namespace(self) -> str:
        """What the raw values depend on: the class and its plain settings (not the transform) —
        strings, numbers, and lists or dicts of them (an external program's command and
        environment)."""
        settings = {k: _plain(v) for k, v in sorted(vars(self).items())
                    if k not in self.cache_insensitive and not k.startswith("_") and _plain(v) is not _NOT_PLAIN}
        return f"{type(self).__module__}.{type(self).__qualname__}{settings}"

    def _score_with_disk(self, strings: list[str]) -> list[tuple[str | None, float | None]]:
        import sqlite3

        canonical = self.canonical_forms(strings)
        distinct = list(dict.fromkeys(c for c in canonical if c is not None))
        namespace = self.cache_namespace()
        Path(self.disk_cache).expanduser().parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(Path(self.disk_cache).expanduser(), timeout=60) as db:
            db.execute("CREATE TABLE IF NOT EXISTS raw (oracle TEXT, smiles TEXT, value REAL, "
                       "PRIMARY KEY (oracle, smiles))")
            known: dict[str, float] = {}
            for start in range(0, len(distinct), 500):
                part = distinct[start:start + 500]
                rows = db.execute(f"SELECT smiles, value FROM raw WHERE oracle = ? AND smiles IN "
                                  f"({','.join('?' * len(part))})", [namespace, *part]).fetchall()
                known.update((k, float("nan") if v is None else v) for k, v in rows)
            missing = [c for c in distinct if c not in known]

            def save(pairs) -> None:  # a failed batch's None is not stored
                db.executemany("INSERT OR REPLACE INTO raw VALUES (?, ?, ?)",
                               [(namespace, c, None if np.isnan(v) else v) for c, v in pairs
                                if c is not None and v is not None])
                db.commit()

            self._sink = save
            try:
                fresh = {c: v for c, (_, v) in zip(missing, self._score_parallel(missing))}
            finally:
                self._sink = None
            save(fresh.items())
        known.update(fresh)
        return [(c, known[c] if c is not None else float("nan")) for c in canonical]

    def lookup(self, batch: Sequence) -> tuple[list[str | None], np.ndarray]:
        """Canonical forms and raw values of a batch, through the caches."""
        strings = [s for s in dict.fromkeys(x for x in batch if isinstance(x, str)) if s not in self._canonical]
        scorer = self._score_with_disk if self.disk_cache else self._score_parallel
        canon_of: dict[str, str | None] = {}  # this batch's answers; the caches only memoise
        value_of: dict[str, float] = {}
        for s, (c, v) in zip(strings, scorer(strings) if strings else []):
            canon_of[s] = c
            if c is not None:
                value_of[c] = v
        for x in dict.fromkeys(x for x in batch if isinstance(x, str) and x not in canon_of):
            canon_of[x] = self._canonical[x]
            self._canonical.move_to_end(x)
        missing = [c for c in dict.fromkeys(canon_of.values()) if c is not None and c not in value_of]
        for c in missing:
            if c in self._cache:
                value_of[c] = self._cache[c]
                self._cache.move_to_end(c)
        evicted = [c for c in missing if c not in value_of]  # or not cached: the last try failed
        for c, (_, v) in zip(evicted, scorer(evicted) if evicted else []):  # a canonical form is its own
            value_of[c] = v
        for s in strings:
            self._remember(self._canonical, s, canon_of[s])
        for c, v in value_of.items():
            if v is not None:  # None: no answer this time (see score_uncached), asked again next time
                self._remember(self._cache, c, v)
        canonical = [canon_of.get(x) if isinstance(x, str) else None for x in batch]
        values = np.array([value_of[c] if c is not None and value_of[c] is not None else np.nan for c in canonical],
                          dtype=np.float64)
        return canonical, values

    def __call__(self, sequences: Sequence[str]) -> Scores:
        batch = _check_batch(sequences)
        canonical, values = self.lookup(batch)
        return self.scores_from_values(values, canonical)
