"""Sample-quality metrics as torchmetrics ``Metric``s, synchronised across DDP ranks.

Strings cannot be all-gathered, so uniqueness keeps a 64-bit hash of each valid canonical form
(collisions among a few million samples have probability ~1e-7).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torchmetrics import Metric
from tqdm.auto import tqdm

from oracles.canonical import canonicaliser


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


class Validity(Metric):
    """Fraction of samples whose canonical form exists (RDKit parses the SMILES, DNA is ACGT…)."""

    full_state_update = False

    def __init__(self, domain: str = "smiles", **kwargs):
        super().__init__(**kwargs)
        self.canon = canonicaliser(domain)
        self.add_state("valid", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, samples: Sequence[str]) -> None:
        self.valid += sum(self.canon(s) is not None for s in samples)
        self.total += len(samples)

    def compute(self) -> torch.Tensor:
        return self.valid.float() / self.total.clamp(min=1)

    def fraction(self) -> float:
        """``compute`` as an exact Python float (float32 reports 1,800 of 2,000 as 0.89999998,
        which a ≥ 0.90 threshold refuses)."""
        return int(self.valid) / max(int(self.total), 1)


def _concat(state, empty: torch.Tensor) -> torch.Tensor:
    """A ``cat`` state as one tensor: a list before synchronisation, a tensor after."""
    if isinstance(state, torch.Tensor):
        return state
    return torch.cat(state) if state else empty


class _CanonicalHashes(Metric):
    """Collects 64-bit hashes of the valid samples' canonical forms (DDP-synchronised)."""

    full_state_update = False

    def __init__(self, domain: str = "smiles", **kwargs):
        super().__init__(**kwargs)
        self.canon = canonicaliser(domain)
        self.add_state("hashes", [], dist_reduce_fx="cat")

    def update(self, samples: Sequence[str]) -> None:
        canon = [c for c in map(self.canon, samples) if c is not None]
        self.hashes.append(torch.tensor([_hash64(c) for c in canon], dtype=torch.long, device=self.device))

    def all_hashes(self) -> torch.Tensor:
        return _concat(self.hashes, torch.zeros(0, dtype=torch.long))


class Uniqueness(_CanonicalHashes):
    """Distinct canonical forms among the valid samples, divided by the number of valid samples."""

    def compute(self) -> torch.Tensor:
        return torch.tensor(self.fraction())

    def fraction(self) -> float:
        """Distinct over valid as an exact Python float; 0 with no valid sample."""
        hashes = self.all_hashes()
        return torch.unique(hashes).numel() / hashes.numel() if hashes.numel() else 0.0


class Novelty(_CanonicalHashes):
    """Fraction of distinct valid canonical samples that are not in ``reference`` (MOSES novelty).

    As in MOSES, ``reference`` strings are compared as given (MOSES training SMILES are already
    canonical); pass ``canonicalize_reference=True`` for other sets.
    """

    def __init__(self, reference, domain: str = "smiles", canonicalize_reference: bool = False, **kwargs):
        super().__init__(domain, **kwargs)
        ref = (self.canon(s) for s in reference) if canonicalize_reference else reference
        self.reference = {_hash64(s) for s in ref if s}

    def compute(self) -> torch.Tensor:
        distinct = set(torch.unique(self.all_hashes()).tolist())
        if not distinct:
            return torch.tensor(0.0)
        return torch.tensor(len(distinct - self.reference) / len(distinct))


def morgan_bits(smiles: Sequence[str], radius: int = 2, n_bits: int = 1024) -> torch.Tensor:
    """Morgan bit vectors (uint8 [n, n_bits]) of valid SMILES; invalid ones are skipped."""
    import numpy as np
    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    rows = []
    for s in smiles:
        mol = Chem.MolFromSmiles(s) if s else None
        if mol is None:
            continue
        array = np.zeros(n_bits, dtype=np.uint8)
        DataStructs.ConvertToNumpyArray(generator.GetFingerprint(mol), array)
        rows.append(array)
    return torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, n_bits, dtype=torch.uint8)


def mean_pairwise_tanimoto(a: torch.Tensor, b: torch.Tensor, p: int = 1, chunk: int = 4096) -> torch.Tensor:
    """Mean over all (a_i, b_j) pairs of Tanimoto^p; two empty fingerprints count as similarity 1."""
    total = torch.zeros((), dtype=torch.float64)
    b = b.float()
    b_sum = b.sum(1)
    for start in range(0, a.size(0), chunk):
        x = a[start:start + chunk].float()
        inter = x @ b.T
        union = x.sum(1, keepdim=True) + b_sum[None, :] - inter
        sim = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
        total += (sim.double() ** p).sum()
    return total / (a.size(0) * b.size(0))


def kmer_bits(sequences: Sequence[str], k: int = 6) -> torch.Tensor:
    """The set of DNA k-mers present in each readable sequence (A/C/G/T only, length ≥ k), as bit
    vectors (uint8 [n, 4^k]); unreadable sequences are skipped, as :func:`morgan_bits` skips invalid
    SMILES. The same 6-mer sets ``oracles.domain`` uses for DNA."""
    import numpy as np

    from oracles.domain import read

    if k != 6:
        raise ValueError(f"DNA k-mer sets are 6-mers (oracles.domain), got k={k}")
    packed, valid, _ = read(list(sequences), "dna")
    return torch.from_numpy(np.unpackbits(packed[valid], axis=1))


class InternalDiversity(Metric):
    """MOSES IntDiv_p = 1 − (mean over all ordered pairs, self-pairs included, of Tanimoto^p)^(1/p)
    on Morgan fingerprints (radius 2, 1024 bits) of the valid samples (duplicates kept).

    For ``domain="dna"`` the fingerprints are the sets of 6-mers each sequence contains
    (:func:`kmer_bits`, 4,096 bits): the same formula, the DNA analogue (not a MOSES metric)."""

    full_state_update = False
    WIDTH = {"smiles": 1024, "dna": 4 ** 6}

    def __init__(self, p: int = 1, domain: str = "smiles", **kwargs):
        super().__init__(**kwargs)
        if domain not in self.WIDTH:
            raise ValueError(f"IntDiv is defined for {sorted(self.WIDTH)}, got {domain!r}")
        self.p, self.domain = p, domain
        self.add_state("fps", [], dist_reduce_fx="cat")

    def update(self, samples: Sequence[str]) -> None:
        bits = morgan_bits(samples) if self.domain == "smiles" else kmer_bits(samples)
        self.fps.append(bits.to(self.device))

    def compute(self) -> torch.Tensor:
        fps = _concat(self.fps, torch.zeros(0, self.WIDTH[self.domain], dtype=torch.uint8))
        if fps.size(0) == 0:
            return torch.tensor(0.0)
        return (1 - mean_pairwise_tanimoto(fps.cpu(), fps.cpu(), self.p) ** (1 / self.p)).float()


def _fcd(device: str = "cpu", n_jobs: int = 1):
    try:
        from fcd_torch import FCD
    except ImportError as err:
        raise ImportError("FCD needs the optional fcd-torch package: pip install 'rewardfit[fcd]'") from err
    return FCD(device=device, n_jobs=n_jobs)


def chemnet_statistics(smiles: Sequence[str], device: str = "cpu", n_jobs: int = 1,
                       cache_dir: str | Path | None = None, chunk: int = 5000) -> dict[str, np.ndarray]:
    """Mean and covariance of the ChemNet activations of ``smiles`` (what FCD compares).

    Why a function of its own: MOSES's FCD/Test compares samples with its *whole* test set
    (176,074 molecules, ≈ 7.5 minutes of ChemNet on a CPU core); with ``cache_dir`` the statistics
    are stored under a hash of the exact list, so that cost is paid once per machine. A subset
    must be random: the MOSES files are ordered, and their first 10,000 test molecules are
    ≈ 4 FCD from the whole test set (checkpoints/molgpt-moses/README.md).
    """
    path = None
    if cache_dir is not None:
        digest = hashlib.sha1("\n".join(smiles).encode()).hexdigest()[:20]
        path = Path(cache_dir) / f"chemnet_{digest}.npz"
        if path.exists():
            with np.load(path) as stored:
                return {"mu": stored["mu"], "sigma": stored["sigma"]}
    if len(smiles) < 2:
        raise ValueError(f"FCD needs at least 2 molecules, got {len(smiles)}")
    # In chunks, summing x and xᵀx: fcd-torch's own precalc keeps ≈ 0.18 MB per molecule alive
    # until it returns (32 GB for the MOSES test set); a chunk's memory is freed after it.
    fcd, n, total, outer = _fcd(device, n_jobs), 0, 0.0, 0.0
    for start in tqdm(range(0, len(smiles), chunk), desc="ChemNet", unit="chunk",
                      disable=len(smiles) <= chunk, mininterval=30):
        act = fcd.get_predictions(list(smiles[start:start + chunk])).astype(np.float64)
        n, total, outer = n + len(act), total + act.sum(0), outer + act.T @ act
    mu = total / n
    stats = {"mu": mu, "sigma": (outer - n * np.outer(mu, mu)) / (n - 1)}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, mu=stats["mu"], sigma=stats["sigma"])
        tmp.replace(path)
    return stats


def frechet_chemnet_distance(samples: Sequence[str], reference: Sequence[str] | dict, device: str = "cpu",
                             n_jobs: int = 1) -> float:
    """FCD between the valid ``samples`` and a reference set, via the optional ``fcd-torch`` package
    (it ships the ChemNet weights, so it works offline): ``pip install 'rewardfit[fcd]'``.

    ``reference`` is a list of SMILES or the output of :func:`chemnet_statistics` for it. Both
    sides go through :func:`chemnet_statistics` (chunked, so large sets fit in memory) and are
    canonicalised by fcd-torch, as in MOSES. Fewer than 2 molecules on a side give NaN with a
    warning, as fcd-torch does."""
    valid = [s for s in samples if canonicaliser("smiles")(s) is not None]
    sides = [reference, valid]
    for k, side in enumerate(sides):
        if not isinstance(side, dict):
            if len(side) < 2:
                warnings.warn(f"FCD needs at least 2 molecules on each side, got {len(side)}", stacklevel=2)
                return float("nan")
            sides[k] = chemnet_statistics(list(side), device, n_jobs)
    return float(_fcd(device, n_jobs).metric(*sides))


def validity_and_uniqueness(samples: Sequence[str], domain: str = "smiles") -> dict[str, float]:
    """Validity and uniqueness of one batch of samples, as plain floats (this process only)."""
    validity, uniqueness = Validity(domain), Uniqueness(domain)
    validity.update(samples)
    uniqueness.update(samples)
    return {"validity": validity.fraction(), "uniqueness": uniqueness.fraction()}


def sample_quality(texts: Sequence[str], domain: str) -> dict[str, float]:
    """``samples/validity``, ``samples/uniqueness`` and, for SMILES and DNA, ``samples/intdiv1``
    (:class:`InternalDiversity`: Morgan bits for SMILES, 6-mer sets for DNA) of one set of samples
    (this process only). Diversity is what DPO-style objectives lose and ERA should keep, so
    alignment logs it with every evaluation."""
    quality = validity_and_uniqueness(texts, domain)
    stats = {"samples/validity": quality["validity"], "samples/uniqueness": quality["uniqueness"]}
    if domain in InternalDiversity.WIDTH:
        intdiv = InternalDiversity(domain=domain)
        intdiv.update(texts)
        stats["samples/intdiv1"] = float(intdiv.compute())
    return stats


_BASE_CODE = torch.full((256,), -1, dtype=torch.long)
for _code, _base in enumerate(b"ACGT"):
    _BASE_CODE[_base] = _code
    _BASE_CODE[ord(chr(_base).lower())] = _code


def kmer_counts(sequences: Sequence[str], k: int) -> torch.Tensor:
    """Counts of the 4^k DNA k-mers over all windows of ``sequences`` (float64 [4^k]); windows
    holding anything but A/C/G/T (either case) are skipped, so an ``N`` never becomes a k-mer."""
    counts = torch.zeros(4 ** k, dtype=torch.float64)
    weights = 4 ** torch.arange(k - 1, -1, -1)
    for text in sequences:
        if len(text) < k:
            continue
        codes = _BASE_CODE[torch.frombuffer(bytearray(text.encode("latin-1", "replace")), dtype=torch.uint8).long()]
        windows = codes.unfold(0, k, 1)
        ok = (windows >= 0).all(1)
        counts += torch.bincount((windows[ok] * weights).sum(1), minlength=4 ** k).double()
    return counts


class KmerSpectrumShift(Metric):
    """Jensen–Shannon divergence (natural log, in [0, ln 2]) between the k-mer frequency spectrum
    of generated DNA and that of a reference set — the "k-mer spectrum shift" used to judge DNA
    generators: 0 when generated sequences have the reference's k-mer composition, large when they
    repeat a few motifs or drift in GC content. Counts are summed across DDP ranks."""

    full_state_update = False

    def __init__(self, reference: Sequence[str], k: int = 6, **kwargs):
        super().__init__(**kwargs)
        if not 1 <= k <= 10:
            raise ValueError(f"k must be in 1..10 (4^k counts), got {k}")
        self.k = k
        reference_counts = kmer_counts(reference, k)
        if reference_counts.sum() == 0:
            raise ValueError(f"the reference holds no ACGT {k}-mer")
        self.register_buffer("reference_freq", reference_counts / reference_counts.sum(), persistent=False)
        self.add_state("counts", torch.zeros(4 ** k, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, samples: Sequence[str]) -> None:
        self.counts += kmer_counts(samples, self.k).to(self.counts.device)

    def compute(self) -> torch.Tensor:
        if self.counts.sum() == 0:
            return torch.tensor(float("nan"))
        p, q = self.counts / self.counts.sum(), self.reference_freq.to(self.counts)
        m = (p + q) / 2

        def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            mask = a > 0
            return (a[mask] * (a[mask] / b[mask]).log()).sum()

        return ((kl(p, m) + kl(q, m)) / 2).float()
