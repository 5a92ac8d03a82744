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

Checked at construction, each a :class:`LandscapeError` naming the file, the lines and the fix:
letters outside the 20 amino acids in the parent, in the variants (``*``, a stop, allowed) or in
``muts``; a fitness cell that is not a finite number (``n/a``, an empty cell, a decimal comma
``0,0619``: an error, or with ``drop_invalid: true`` those variants are left out as unmeasured and
counted in a warning); a variant listed twice with different fitness; a table left with no
measured variant; the parent and sites against the table's own wild type — the ``muts`` column's
wild-type residues, or, in a table with an ``HD`` column (Hamming distance to the wild type, as
GB1's), every row's distance (so ``sites: [38, 40, 41, 54]`` on GB1, whose ``HD = 0`` row is
``VDGV``, is refused instead of making ``GDGV`` the wild type). A table with neither cannot be
checked against the parent. Cells are read as text, so a variant ``NA`` is the two residues N, A.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from datamodules.sources import line_examples, read_error, read_table
from oracles.base import Oracle, Scores, _check_batch
from oracles.transforms import NegLog, Transform

log = logging.getLogger(__name__)

LANDSCAPES = Path(__file__).parent / "assets" / "protein_landscapes"
AMINO_ACIDS = set("ACDEFGHIKLMNPQRSTVWY")
GB1_SITES = [39, 40, 41, 54]  # V39, D40, G41, V54 (1-indexed in GB1.fasta), Wu et al. 2016
_CODONS = {}
for _i, (_a, _b, _c) in enumerate((a, b, c) for a in "TCAG" for b in "TCAG" for c in "TCAG"):
    _CODONS[_a + _b + _c] = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"[_i]


_MUTATION = r"^([ACDEFGHIKLMNPQRSTVWY])(\d+)([ACDEFGHIKLMNPQRSTVWY*])$"


class LandscapeError(ValueError):
    """The landscape files and the configured parent/sites do not fit together."""


def read_fasta(path: str | Path, translate: bool = False) -> str:
    """The first sequence of a FASTA file; ``translate`` reads a coding DNA sequence as protein."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FASTA file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise LandscapeError(str(read_error(path, err))) from err
    lines = [line.strip() for line in text.splitlines()]
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
    parsed = entries.str.extract(_MUTATION)
    unreadable = entries[parsed[0].isna()]
    if len(unreadable):
        raise LandscapeError(f"{table}: cannot read the muts column entry {unreadable.iloc[0]!r} "
                             f"({line_examples(unreadable.index[:1])}; expected e.g. A104G: the wild-type "
                             "amino acid, the 1-indexed site, an amino acid or * for a stop)")
    pairs = parsed[[1, 0]].drop_duplicates()
    pairs[1] = pairs[1].astype(int)
    conflicts = pairs[pairs[1].duplicated(keep=False)]
    if len(conflicts):
        raise LandscapeError(f"{table}: the muts column gives site(s) {sorted(set(conflicts[1]))} "
                             "more than one wild-type residue")
    # the site order of the variant strings: that of the longest muts entry
    longest = muts.loc[lambda m: m.str.count(":") == m.str.count(":").max()].iloc[0]
    order = [int(re.fullmatch(_MUTATION, e).group(2)) for e in longest.split(":")]
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
        drop_invalid: a fitness cell that is not a finite number leaves its variant unmeasured (and
            is counted in a warning) instead of being an error.
    """

    name = "fitness"

    def __init__(self, table: str, parent: str, sites: list[int] | None = None,
                 variant_column: str | None = None, fitness_column: str | None = None,
                 translate_parent: bool = False, transform: Transform | None = None,
                 penalty: float = 10.0, name: str | None = None, drop_invalid: bool = False):
        super().__init__(transform or NegLog(), penalty, name)
        path = _resolve(table)
        frame = read_table(path)  # text cells: "NA" is a variant, "n/a" a fitness to report
        variant_column = variant_column or next((c for c in ("Variants", "AAs") if c in frame), None)
        fitness_column = fitness_column or next((c for c in ("Fitness", "fitness") if c in frame), None)
        if variant_column is None or variant_column not in frame:
            raise LandscapeError(f"{table}: no variant column; columns are {list(frame.columns)}")
        if fitness_column is None or fitness_column not in frame:
            raise LandscapeError(f"{table}: no fitness column; columns are {list(frame.columns)}")
        # a path has '.' or '/'; a bare shipped name (``TrpB``) is its FASTA, not a sequence
        is_sequence = re.fullmatch(r"[A-Za-z]+", parent) is not None and not (
            len(parent) < 64 and (LANDSCAPES / f"{parent}.fasta").is_file())
        self.parent = parent.upper() if is_sequence else read_fasta(_resolve(parent), translate_parent)
        if not self.parent:
            raise LandscapeError(f"the parent sequence {parent!r} is empty")
        letters = [(i + 1, a) for i, a in enumerate(self.parent) if a not in AMINO_ACIDS]
        if letters:
            hint = " (a stop codon or an unknown codon: check the reading frame)" if translate_parent else ""
            raise LandscapeError(f"the parent {parent if len(parent) < 80 else parent[:77] + '...'!r} has "
                                 f"{len(letters)} letter(s) outside the 20 amino acids at (position, letter) "
                                 f"{letters[:5]}{hint}")
        wild_type = None
        if "muts" in frame:
            table_sites, wild_type = _sites_from_muts(frame["muts"], table)
            if sites is not None and list(sites) != table_sites:
                raise LandscapeError(f"{table}: configured sites {list(sites)} differ from the table's {table_sites}")
            sites = table_sites
        if sites is None:
            raise LandscapeError(f"{table} has no muts column: give the sites (1-indexed)")
        if any(isinstance(s, bool) or int(s) != s for s in sites):
            raise LandscapeError(f"sites {list(sites)} must be whole numbers (1-indexed positions in the parent)")
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
        self.wild_type = "".join(self.parent[s - 1] for s in self.sites)
        variants = frame[variant_column].str.strip().str.upper()
        lengths = set(variants.str.len())
        if lengths != {len(self.sites)}:
            raise LandscapeError(f"{table}: variants of length {sorted(lengths)} for {len(self.sites)} sites")
        unknown = ~variants.str.fullmatch(r"[ACDEFGHIKLMNPQRSTVWY*]+")
        if unknown.any():
            raise LandscapeError(f"{path}: {int(unknown.sum())} variant(s) in column {variant_column!r} with letters "
                                 f"outside the 20 amino acids and * (stop): "
                                 f"{line_examples(variants.index[unknown], variants[unknown])}")
        if "HD" in frame:
            self._check_distances(path, variants, frame["HD"])
        fitness = self._fitness_values(path, frame[fitness_column], fitness_column, drop_invalid)
        measured = fitness.notna() & ~variants.str.contains("*", regex=False)
        self._check_repeats(path, variants[measured], fitness[measured])
        self.fitness = dict(zip(variants[measured].tolist(), fitness[measured].to_numpy(np.float64).tolist()))
        if not self.fitness:
            raise LandscapeError(f"{path}: no measured variant (every row has a stop or no fitness value)")

    def _fitness_values(self, path: Path, raw: pd.Series, column: str, drop_invalid: bool) -> pd.Series:
        """The fitness column as floats; a cell that is not a finite number is an error, or NaN (the
        variant left unmeasured, counted in a warning) with ``drop_invalid``."""
        raw = raw.str.strip()
        values = pd.to_numeric(raw, errors="coerce").astype(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            message = (f"{path}: {int(bad.sum())} of {len(raw)} fitness value(s) in column {column!r} are not finite "
                       f"numbers: {line_examples(raw.index[bad], raw[bad])}")
            if raw[bad].str.fullmatch(r"[-+]?\d*,\d+").any():
                message += " (write decimals with a point: 0.0619, not 0,0619)"
            if not drop_invalid:
                raise LandscapeError(f"{message}; fix the table, or set drop_invalid: true to leave those variants "
                                     "unmeasured")
            log.warning("%s; drop_invalid: those variants are unmeasured (penalty energy)", message)
            values[bad] = np.nan
        return values

    def _check_distances(self, path: Path, variants: pd.Series, distances: pd.Series) -> None:
        """Each row's ``HD`` (Hamming distance to the wild type) against the parent's residues at the
        sites: a wrong parent or wrong sites move the wild type, and every distance with it."""
        hd = pd.to_numeric(distances.str.strip(), errors="coerce")
        residues = np.array(variants.tolist(), dtype=f"U{len(self.sites)}").view("U1").reshape(len(variants), -1)
        actual = (residues != np.array(list(self.wild_type))).sum(axis=1)
        wrong = hd.notna() & (hd != actual)
        if not wrong.any():
            return
        wild_rows = variants[hd == 0]
        found = (f"the table's wild-type row (HD = 0, {line_examples(wild_rows.index[:1])}) is "
                 f"{wild_rows.iloc[0]!r}" if len(wild_rows) else
                 f"{int(wrong.sum())} row(s) have another HD (Hamming distance to the wild type), e.g. "
                 f"{line_examples(variants.index[wrong], variants[wrong] + ' HD ' + distances[wrong].str.strip())}")
        raise LandscapeError(f"{path}: the parent's residues at sites {self.sites} are {self.wild_type!r}, but "
                             f"{found}: check the sites (1-indexed) and the parent")

    @staticmethod
    def _check_repeats(path: Path, variants: pd.Series, fitness: pd.Series) -> None:
        """A variant listed twice must have one fitness: which one counts is the user's call."""
        repeated = variants.duplicated(keep=False)
        spread = fitness[repeated].groupby(variants[repeated].to_numpy()).agg(["nunique", list])
        conflicting = spread[spread["nunique"] > 1]
        if len(conflicting):
            examples = "; ".join(f"{v!r}: {f}" for v, f in conflicting["list"].head(3).items())
            raise LandscapeError(f"{path}: {len(conflicting)} variant(s) are listed with different fitness values "
                                 f"({examples}); keep one row per variant (e.g. the mean of replicates)")

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
