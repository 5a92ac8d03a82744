"""The oracle interface: a batch of sequences in, a batch of energies (lower is better) out.

Every oracle returns :class:`Scores`: float64 energies, a validity mask, and the raw property
values. Invalid inputs (unparsable SMILES, empty strings, ``None``, properties that come out NaN)
never raise and never produce NaN: they get the oracle's ``penalty`` energy and ``valid=False``.
A caller error (not a list of sequences) raises.

:class:`MoleculeOracle` holds the machinery molecular oracles share: canonicalise each SMILES,
score each distinct canonical molecule once per batch, and keep an LRU cache of raw values keyed
by canonical SMILES (the oracle's configuration is fixed per instance, so the cache key needs
nothing else). Subclasses implement only ``compute(mol) -> float``.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np
import torch

from oracles.canonical import canonical_smiles
from oracles.transforms import Identity, Transform

log = logging.getLogger(__name__)

MAX_SMILES_LENGTH = 2000  # longer strings are treated as invalid without parsing


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


def _score_chunk(oracle: "MoleculeOracle", chunk: list[str]) -> list[tuple[str | None, float]]:
    return oracle.score_uncached(chunk)


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
    """

    parallel_threshold = 128  # fewer uncached molecules than this are scored in process

    def __init__(self, transform: Transform | None = None, penalty: float = 10.0, name: str | None = None,
                 cache_size: int = 200_000, n_workers: int = 1, disk_cache: str | None = None,
                 worker_timeout: float | None = None):
        super().__init__(transform, penalty, name)
        if worker_timeout is not None and not worker_timeout > 0:
            raise ValueError(f"worker_timeout must be a positive number of seconds or None, got {worker_timeout}")
        self.cache_size = cache_size
        self.n_workers = max(1, int(n_workers))
        self.worker_timeout = worker_timeout
        self.disk_cache = disk_cache
        self._canonical: OrderedDict[str, str | None] = OrderedDict()
        self._cache: OrderedDict[str, float] = OrderedDict()
        self._pool = None

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

    def score_uncached(self, strings: Sequence[str]) -> list[tuple[str | None, float]]:
        """(canonical SMILES, raw value) for each input string, each distinct molecule once."""
        from rdkit import Chem

        canonical = [canonical_smiles(s) if len(s) <= MAX_SMILES_LENGTH else None for s in strings]
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
                results = list(self._pool.map(_score_chunk, [self] * len(chunks), chunks,
                                              timeout=self.worker_timeout))
                return [pair for part in results for pair in part]
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

    def _remember(self, cache: OrderedDict, key, value) -> None:
        cache[key] = value
        if len(cache) > self.cache_size:
            cache.popitem(last=False)

    def cache_namespace(self) -> str:
        """What the raw values depend on: the class and its plain settings (not the transform)."""
        skip = {"transform", "penalty", "name", "cache_size", "n_workers", "disk_cache", "worker_timeout"}
        settings = {k: v for k, v in sorted(vars(self).items())
                    if k not in skip and not k.startswith("_") and isinstance(v, (str, int, float, bool))}
        return f"{type(self).__module__}.{type(self).__qualname__}{settings}"

    def _score_with_disk(self, strings: list[str]) -> list[tuple[str | None, float]]:
        import sqlite3

        canonical = [canonical_smiles(s) if len(s) <= MAX_SMILES_LENGTH else None for s in strings]
        distinct = list(dict.fromkeys(c for c in canonical if c is not None))
        namespace = self.cache_namespace()
        with sqlite3.connect(self.disk_cache, timeout=60) as db:
            db.execute("CREATE TABLE IF NOT EXISTS raw (oracle TEXT, smiles TEXT, value REAL, "
                       "PRIMARY KEY (oracle, smiles))")
            known: dict[str, float] = {}
            for start in range(0, len(distinct), 500):
                part = distinct[start:start + 500]
                rows = db.execute(f"SELECT smiles, value FROM raw WHERE oracle = ? AND smiles IN "
                                  f"({','.join('?' * len(part))})", [namespace, *part]).fetchall()
                known.update((k, float("nan") if v is None else v) for k, v in rows)
            missing = [c for c in distinct if c not in known]
            fresh = {c: v for c, (_, v) in zip(missing, self._score_parallel(missing))}
            db.executemany("INSERT OR REPLACE INTO raw VALUES (?, ?, ?)",
                           [(namespace, c, None if np.isnan(v) else v) for c, v in fresh.items()])
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
        evicted = [c for c in missing if c not in value_of]
        for c, (_, v) in zip(evicted, self.score_uncached(evicted)):
            value_of[c] = v
        for s in strings:
            self._remember(self._canonical, s, canon_of[s])
        for c, v in value_of.items():
            self._remember(self._cache, c, v)
        canonical = [canon_of.get(x) if isinstance(x, str) else None for x in batch]
        values = np.array([value_of[c] if c is not None else np.nan for c in canonical], dtype=np.float64)
        return canonical, values

    def __call__(self, sequences: Sequence[str]) -> Scores:
        batch = _check_batch(sequences)
        canonical, values = self.lookup(batch)
        return self.scores_from_values(values, canonical)
