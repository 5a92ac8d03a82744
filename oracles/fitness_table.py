"""Measured protein fitness landscapes as oracles: exact table lookup of a variant.

A variant is given either as the residues at the chosen sites (``"VDGV"`` for GB1's four sites)
or as a full sequence of the parent's length (the sites are read out; any other position that
differs from the parent makes the variant unmeasured). Energy by default U = −log(fitness)
(the ERA directed-evolution convention); fitness ≤ 0, variants absent from the table, variants
with a stop codon, wrong lengths and letters outside the 20 amino acids get ``penalty`` (10 by
default) and ``valid = False`` ("unmeasured").

Shipped landscapes (``oracles/assets/protein_landscapes``, see its README): ``GB1`` (4 sites, raw
fitness, wild type 1), ``TrpB3A`` … ``TrpB3I``, ``DHFR``, ``ParD2``, ``ParD3`` (3 sites, fitness
scaled to the landscape's maximum). Sites always come from the data (the ``muts`` column) or from
configuration, never from a guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from oracles.base import Oracle, Scores, _check_batch
from oracles.transforms import NegLog, Transform

LANDSCAPES = Path(__file__).parent / "assets" / "protein_landscapes"
AMINO_ACIDS = set("ACDEFGHIKLMNPQRSTVWY")
GB1_SITES = [39, 40, 41, 54]  # V39, D40, G41, V54 (1-indexed in GB1.fasta), Wu et al. 2016
_CODONS = {}
for _i, (_a, _b, _c) in enumerate((a, b, c) for a in "TCAG" for b in "TCAG" for c in "TCAG"):
    _CODONS[_a + _b + _c] = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"[_i]


class LandscapeError(ValueError):
    """The landscape files and the configured parent/sites do not fit together."""


def read_fasta(path: str | Path, translate: bool = False) -> str:
    """The first sequence of a FASTA file; ``translate`` reads a coding DNA sequence as protein."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FASTA file not found: {path}")
    lines = [line.strip() for line in path.read_text().splitlines()]
    seq = "".join(line for line in lines if line and not line.startswith(">")).upper()
    if translate:
        if len(seq) % 3:
            raise LandscapeError(f"{path}: coding sequence length {len(seq)} is not a multiple of 3")
        seq = "".join(_CODONS.get(seq[i:i + 3], "X") for i in range(0, len(seq), 3)).rstrip("*")
    return seq


def _resolve(path: str) -> Path:
    candidate = Path(path).expanduser()
    if candidate.is_file():
        return candidate
    for name in (path, f"{path}.csv.gz", f"{path}.csv", f"{path}.fasta"):
        shipped = LANDSCAPES / name
        if shipped.is_file():
            return shipped
    raise FileNotFoundError(f"landscape file {path!r} not found (shipped: {sorted(p.name for p in LANDSCAPES.iterdir())})")


def _sites_from_muts(muts: pd.Series, table: str) -> tuple[list[int], list[str]]:
    """Sites and wild-type residues from a ``muts`` column (``A104*:E105*:T106A``).

    Every row is read, not just the first: a row omits a site where the variant keeps the wild
    type (``T106*:G107*`` in TrpB3C; ``WT`` for the parent itself), so one row can list fewer
    sites than the landscape has. A site listed with two different wild-type residues is an
    error.
    """
    muts = muts.dropna().astype(str).str.strip()
    muts = muts[(muts != "") & (muts.str.upper() != "WT")]  # the wild-type row lists no mutation
    entries = muts.str.split(":").explode()
    entries = entries[entries.str.len() > 0]
    if entries.empty:
        raise LandscapeError(f"{table}: the muts column is empty")
    parsed = entries.str.extract(r"^([A-Z*])(\d+)([A-Z*])$")
    unreadable = entries[parsed[0].isna()]
    if len(unreadable):
        raise LandscapeError(f"{table}: cannot read the muts column entry {unreadable.iloc[0]!r} "
                             "(expected e.g. A104G)")
    pairs = parsed[[1, 0]].drop_duplicates()
    pairs[1] = pairs[1].astype(int)
    conflicts = pairs[pairs[1].duplicated(keep=False)]
    if len(conflicts):
        raise LandscapeError(f"{table}: the muts column gives site(s) {sorted(set(conflicts[1]))} "
                             "more than one wild-type residue")
    # the site order of the variant strings: that of the longest muts entry
    longest = muts.loc[lambda m: m.str.count(":") == m.str.count(":").max()].iloc[0]
    order = [int(re.fullmatch(r"[A-Z*](\d+)[A-Z*]", e).group(1)) for e in longest.split(":")]
    if set(order) != set(pairs[1]):
        raise LandscapeError(f"{table}: no muts entry lists all sites {sorted(set(pairs[1]))}; give the sites")
    wild = dict(zip(pairs[1], pairs[0]))
    return order, [wild[s] for s in order]


class FitnessTable(Oracle):
    """Look up measured fitness of protein variants.

    Args:
        table: CSV path or shipped name (``GB1``, ``TrpB3A``, …, ``DHFR``, ``ParD2``, ``ParD3``).
        parent: parent sequence: a FASTA path, a shipped FASTA name (``GB1.fasta``), or the sequence.
        sites: 1-indexed positions of the varied sites; default: read from the ``muts`` column.
        variant_column / fitness_column: default: the first of ``Variants``/``AAs`` and
            ``Fitness``/``fitness`` present.
        translate_parent: the parent FASTA is coding DNA (DHFR).
    """

    name = "fitness"

    def __init__(self, table: str, parent: str, sites: list[int] | None = None,
                 variant_column: str | None = None, fitness_column: str | None = None,
                 translate_parent: bool = False, transform: Transform | None = None,
                 penalty: float = 10.0, name: str | None = None):
        super().__init__(transform or NegLog(), penalty, name)
        frame = pd.read_csv(_resolve(table), encoding="utf-8-sig")
        variant_column = variant_column or next((c for c in ("Variants", "AAs") if c in frame), None)
        fitness_column = fitness_column or next((c for c in ("Fitness", "fitness") if c in frame), None)
        if variant_column is None or variant_column not in frame:
            raise LandscapeError(f"{table}: no variant column; columns are {list(frame.columns)}")
        if fitness_column is None or fitness_column not in frame:
            raise LandscapeError(f"{table}: no fitness column; columns are {list(frame.columns)}")
        if frame.empty:
            raise LandscapeError(f"{table}: the table has no rows")
        # a path has '.' or '/'; a bare shipped name (``TrpB``) is its FASTA, not a sequence
        is_sequence = re.fullmatch(r"[A-Za-z]+", parent) is not None and not (
            len(parent) < 64 and (LANDSCAPES / f"{parent}.fasta").is_file())
        self.parent = parent.upper() if is_sequence else read_fasta(_resolve(parent), translate_parent)
        if not self.parent:
            raise LandscapeError(f"the parent sequence {parent!r} is empty")
        wild_type = None
        if "muts" in frame:
            table_sites, wild_type = _sites_from_muts(frame["muts"], table)
            if sites is not None and list(sites) != table_sites:
                raise LandscapeError(f"{table}: configured sites {list(sites)} differ from the table's {table_sites}")
            sites = table_sites
        if sites is None:
            raise LandscapeError(f"{table} has no muts column: give the sites (1-indexed)")
        self.sites = [int(s) for s in sites]
        bad = [s for s in self.sites if not 1 <= s <= len(self.parent)]
        if bad:
            raise LandscapeError(f"site(s) {bad} outside the parent sequence of length {len(self.parent)} "
                                 "(sites are 1-indexed)")
        if len(set(self.sites)) != len(self.sites):
            raise LandscapeError(f"sites {self.sites} are not distinct")
        if wild_type is not None:
            mismatch = [(s, w, self.parent[s - 1]) for s, w in zip(self.sites, wild_type) if self.parent[s - 1] != w]
            if mismatch:
                raise LandscapeError(f"parent residues do not match the table's wild type at "
                                     f"(site, table, parent) {mismatch}")
        variants = frame[variant_column].astype(str)
        lengths = set(variants.str.len())
        if lengths != {len(self.sites)}:
            raise LandscapeError(f"{table}: variants of length {sorted(lengths)} for {len(self.sites)} sites")
        fitness = pd.to_numeric(frame[fitness_column], errors="coerce").to_numpy(dtype=np.float64)
        self.fitness = {v: f for v, f in zip(variants, fitness) if "*" not in v and np.isfinite(f)}
        self.wild_type = "".join(self.parent[s - 1] for s in self.sites)

    def variant(self, sequence) -> str | None:
        """The residues at the sites, or ``None`` when the input is not a variant of the parent."""
        if not isinstance(sequence, str):
            return None
        sequence = sequence.strip().upper()
        if len(sequence) == len(self.sites):
            site_residues = sequence
        elif len(sequence) == len(self.parent):
            site_residues = "".join(sequence[s - 1] for s in self.sites)
            rest = [i for i in range(len(self.parent)) if i + 1 not in self.sites]
            if any(sequence[i] != self.parent[i] for i in rest):
                return None
        else:
            return None
        return site_residues if set(site_residues) <= AMINO_ACIDS else None

    def full_sequence(self, variant: str) -> str:
        seq = list(self.parent)
        for site, residue in zip(self.sites, variant):
            seq[site - 1] = residue
        return "".join(seq)

    def __call__(self, sequences: Sequence[str]) -> Scores:
        batch = _check_batch(sequences)
        variants = [self.variant(s) for s in batch]
        values = np.array([self.fitness.get(v, np.nan) if v else np.nan for v in variants])
        return self.scores_from_values(values, variants)
