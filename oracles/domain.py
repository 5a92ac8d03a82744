"""Applicability domain of a learned reward model: is an input like the data the model was trained on?

Why: a reward model fed inputs unlike its training data does not fail, it returns numbers, and an
aligner optimises them. Bounding the *predictions* (``LearnedOracle``'s ``max_z``) leaves a cliff a
policy can sit just inside; this looks at the *inputs*. Two standard checks, both must pass:

- **similarity**: the Tanimoto similarity of an input's fingerprint to its nearest neighbour in
  (a sample of) the training set, at least a threshold calibrated on held-out data so that a
  stated share of honest inputs (``coverage``, default 99 %) lies inside;
- **ranges** (descriptor box): for molecules, every element seen in training and the heavy-atom
  count within the training range; for DNA, the length within the training range. Similarity
  alone misses the case that matters most for QM9: aspirin (13 heavy atoms) shares enough
  substructures with QM9's ≤ 9-atom molecules to pass a similarity threshold, and an additive
  property model extrapolates on it.

Fingerprints: Morgan bits (radius 2, 2,048 bits) for SMILES; the set of DNA 6-mers (4,096 bits,
strand-aware as read) for DNA. The domain is stored beside the model as ``domain.npz`` and built by
``benchmarks/reward_domain.py``. ``LearnedOracle`` loads it when present (``input_domain``);
``MultiObjectiveModule.evaluate`` then reports ``samples/outside_domain``, and
``LearnedOracle(domain_check="penalty")`` scores outside inputs as invalid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FILE = "domain.npz"
KINDS = ("smiles", "dna")
WIDTH = {"smiles": 2048 // 8, "dna": 4 ** 6 // 8}  # packed fingerprint bytes per input
_DNA = frozenset("ACGT")
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


def read(sequences: list[str], kind: str) -> tuple[np.ndarray, np.ndarray, list[tuple[int, frozenset] | None]]:
    """Each input read once: packed bit fingerprints [n, bytes] (uint8; zeros where unreadable),
    a readability mask [n], and per input (size, elements) — heavy atoms and element symbols for
    SMILES, (length, {}) for DNA — or None where it cannot be read."""
    if kind == "smiles":
        from oracles.tdc_forest import morgan_features

        mols = _molecules(sequences)
        valid = np.array([m is not None for m in mols], dtype=bool)
        bits = np.zeros((len(mols), 2048), dtype=bool)
        if valid.any():
            bits[valid] = morgan_features([m for m in mols if m is not None]) > 0
        described = [None if m is None else (m.GetNumHeavyAtoms(), frozenset(a.GetSymbol() for a in m.GetAtoms()))
                     for m in mols]
        return np.packbits(bits, axis=1), valid, described
    if kind == "dna":
        k, code = 6, {"A": 0, "C": 1, "G": 2, "T": 3}
        bits = np.zeros((len(sequences), 4 ** k), dtype=bool)
        valid = np.zeros(len(sequences), dtype=bool)
        for i, s in enumerate(sequences):
            if not _readable_dna(s, k):
                continue
            digits = np.array([code[c] for c in s.upper()], dtype=np.int64)
            index = np.zeros(len(s) - k + 1, dtype=np.int64)
            for j in range(k):
                index = index * 4 + digits[j:len(s) - k + 1 + j]
            bits[i, index] = True
            valid[i] = True
        described = [(len(s), frozenset()) if ok else None for s, ok in zip(sequences, valid)]
        return np.packbits(bits, axis=1), valid, described
    raise ValueError(f"domain kind must be one of {KINDS}, got {kind!r}")


def fingerprints(sequences: list[str], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Packed bit fingerprints [n, bytes] (uint8) and a validity mask [n] (invalid rows are zeros)."""
    packed, valid, _ = read(sequences, kind)
    return packed, valid


def descriptors(sequences: list[str], kind: str) -> list[tuple[int, frozenset] | None]:
    """Per input: (size, elements), or None where it cannot be read (see :func:`read`)."""
    return read(sequences, kind)[2]


def _molecules(sequences: list[str]) -> list:
    """RDKit molecules (None where unparsable or empty), RDKit's parse errors kept quiet here only."""
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        mols = [Chem.MolFromSmiles(s) if isinstance(s, str) and s else None for s in sequences]
    return [m if m is not None and m.GetNumAtoms() else None for m in mols]


def _readable_dna(s, k: int = 6) -> bool:
    return isinstance(s, str) and len(s) >= k and set(s.upper()) <= _DNA


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).sum(-1, dtype=np.int64)
    return _POPCOUNT[x].sum(-1, dtype=np.int64)


def nearest_similarity(queries: np.ndarray, reference: np.ndarray, chunk: int | None = None,
                       budget_bytes: int = 64 << 20) -> np.ndarray:
    """Tanimoto similarity [n] of each packed query row to its most similar reference row; queries
    go ``chunk`` at a time (default: as many as keep the [chunk, m, bytes] AND under ``budget_bytes``)."""
    if queries.shape[1:] != reference.shape[1:]:
        raise ValueError(f"fingerprints of {queries.shape[1]} bytes against a reference of {reference.shape[1]}")
    chunk = chunk or max(1, budget_bytes // max(1, reference.size))
    ref_bits = _popcount(reference)
    out = np.zeros(len(queries))
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        both = _popcount(q[:, None, :] & reference[None, :, :])  # [c, m]
        union = _popcount(q)[:, None] + ref_bits[None, :] - both
        sim = np.where(union > 0, both / np.maximum(union, 1), 1.0)
        out[start:start + chunk] = sim.max(1)
    return out


class InputDomain:
    """Nearest-neighbour similarity to a reference sample of the training inputs, with a threshold.

    Args:
        reference: packed fingerprints of the reference inputs [m, bytes] (uint8).
        kind: ``smiles`` or ``dna``.
        threshold: inputs whose nearest-neighbour similarity is below it are outside.
        coverage: the share of held-out inputs the threshold keeps inside (recorded, informative).
        ranges: ``{"size": [lo, hi], "elements": [...]}`` from the training inputs (size = heavy
            atoms or DNA length); None skips the range check.
    """

    def __init__(self, reference: np.ndarray, kind: str, threshold: float, coverage: float = float("nan"),
                 ranges: dict | None = None):
        if kind not in KINDS:
            raise ValueError(f"domain kind must be one of {KINDS}, got {kind!r}")
        reference = np.ascontiguousarray(reference, dtype=np.uint8)
        if reference.ndim != 2 or not len(reference) or reference.shape[1] != WIDTH[kind]:
            raise ValueError(f"the reference fingerprints must be a non-empty [m, {WIDTH[kind]}] array for {kind}, "
                             f"got {reference.shape}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a similarity in [0, 1], got {threshold}")
        if ranges is not None and (len(ranges.get("size", ())) != 2 or not isinstance(ranges.get("elements", []), list)):
            raise ValueError(f"ranges must be {{'size': [lo, hi], 'elements': [...]}}, got {ranges}")
        self.reference, self.kind, self.threshold, self.coverage = reference, kind, float(threshold), float(coverage)
        self.ranges = None if ranges is None else {"size": [int(v) for v in ranges["size"]],
                                                     "elements": sorted(ranges.get("elements", []))}

    @classmethod
    def build(cls, training: list[str], held_out: list[str], kind: str, n_reference: int = 10_000,
              coverage: float = 0.99, seed: int = 0) -> "InputDomain":
        """Reference = ``n_reference`` valid training inputs drawn at random; threshold = the
        (1 − coverage) quantile of the held-out inputs' nearest-neighbour similarity to it."""
        if not 0.0 < coverage <= 1.0:
            raise ValueError(f"coverage must be in (0, 1], got {coverage}")
        fps, valid, described = read(list(training), kind)
        fps = fps[valid]
        if not len(fps):
            raise ValueError("no valid training inputs to build a domain from")
        rows = np.random.default_rng(seed).permutation(len(fps))[:n_reference]
        reference = fps[np.sort(rows)]
        held, held_valid = fingerprints(list(held_out), kind)
        if not held_valid.any():
            raise ValueError("no valid held-out inputs to calibrate the threshold on")
        sims = nearest_similarity(held[held_valid], reference)
        known = [d for d in described if d is not None]
        ranges = {"size": [min(d[0] for d in known), max(d[0] for d in known)],
                  "elements": sorted(set().union(*(d[1] for d in known)))}
        return cls(reference, kind, float(np.quantile(sims, 1.0 - coverage)), coverage, ranges)

    def _similarity(self, fps: np.ndarray, valid: np.ndarray) -> np.ndarray:
        out = np.full(len(fps), np.nan)
        if valid.any():
            out[valid] = nearest_similarity(fps[valid], self.reference)
        return out

    def _out_of_range(self, described: list[tuple[int, frozenset] | None]) -> np.ndarray:
        if self.ranges is None:
            return np.zeros(len(described), dtype=bool)
        (lo, hi), elements = self.ranges["size"], set(self.ranges["elements"])
        return np.array([d is not None and (not lo <= d[0] <= hi or not d[1] <= elements) for d in described],
                        dtype=bool)

    def similarity(self, sequences: list[str]) -> np.ndarray:
        """[n] nearest-neighbour similarity; NaN for inputs that cannot be fingerprinted."""
        return self._similarity(*fingerprints(list(sequences), self.kind))

    def out_of_range(self, sequences: list[str]) -> np.ndarray:
        """[n] bool: size outside the training range or an element never seen in training."""
        return self._out_of_range(descriptors(list(sequences), self.kind))

    def outside_share(self, sequences: list[str]) -> np.ndarray:
        """[n] float: 1.0 for a readable input below the similarity threshold or out of the
        training ranges, 0.0 for one inside, NaN for one that cannot be read (an unparsable SMILES,
        non-ACGT DNA): those are the oracle's invalid inputs, neither inside nor outside. Each
        input is read (parsed, fingerprinted) once."""
        fps, valid, described = read(list(sequences), self.kind)
        sim = self._similarity(fps, valid)
        outside = (sim < self.threshold) | self._out_of_range(described)
        return np.where(np.isnan(sim), np.nan, outside.astype(float))

    def outside(self, sequences: list[str]) -> np.ndarray:
        """[n] bool: readable and outside (see :meth:`outside_share`); unreadable inputs are False."""
        return self.outside_share(sequences) == 1.0

    def save(self, directory: str | Path) -> Path:
        from networks.files import honour_umask

        path = Path(directory) / FILE
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, reference=self.reference, kind=np.array(self.kind),
                            threshold=np.array(self.threshold), coverage=np.array(self.coverage),
                            ranges=np.array(json.dumps(self.ranges)))
        tmp.replace(path)
        honour_umask(path)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "InputDomain | None":
        """The domain stored in a model directory, or None when it has none."""
        path = Path(directory) / FILE
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                ranges = json.loads(str(data["ranges"])) if "ranges" in data else None
                return cls(data["reference"], str(data["kind"]), float(data["threshold"]), float(data["coverage"]), ranges)
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{path} is not a readable input domain ({err}); rebuild it with "
                             "benchmarks/reward_domain.py or delete it") from err
