"""Canonical forms of generated sequences: the one place that decides what "valid" means.

A canonicaliser maps a string to its canonical form, or ``None`` when the string is not a valid
member of its domain. Validity, uniqueness and novelty are all computed on canonical forms, so
two spellings of one molecule count once.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rdkit import Chem, RDLogger

from networks.ring_labels import has_open_ring

RDLogger.DisableLog("rdApp.*")

_DNA = re.compile(r"[ACGT]+")
_PROTEIN = re.compile(r"[ACDEFGHIKLMNPQRSTVWY]+")


def smiles_molecule(smiles: str):
    """The RDKit molecule of a valid SMILES (non-empty, parses, has atoms), else ``None``."""
    if not isinstance(smiles, str) or not smiles:
        return None
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None or mol.GetNumAtoms() == 0 else mol


#: why a SMILES is invalid, as :func:`smiles_failure` names it
SMILES_FAILURES = ("empty", "unclosed ring", "syntax", "kekulize", "valence", "other")


def smiles_failure(smiles: str) -> str | None:
    """Why ``smiles`` is not a valid molecule (one of :data:`SMILES_FAILURES`), ``None`` when it is.

    A string that does not parse is an ``unclosed ring`` when a ring label occurs an odd number of
    times, else a ``syntax`` error (unbalanced branches, a misplaced bond, …); one that parses
    fails sanitisation on aromaticity (``kekulize``), on an atom's ``valence``, or ``other``.
    """
    if smiles_molecule(smiles) is not None:
        return None
    if not isinstance(smiles, str) or not smiles:
        return "empty"
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return "unclosed ring" if has_open_ring(smiles) else "syntax"
    if mol.GetNumAtoms() == 0:
        return "empty"
    problems = Chem.DetectChemistryProblems(mol)
    kind = problems[0].GetType() if problems else ""
    return "kekulize" if "Kekulize" in kind else "valence" if "Valence" in kind else "other"


def canonical_smiles(smiles: str) -> str | None:
    """RDKit canonical SMILES, or ``None`` for an empty or unparsable string."""
    mol = smiles_molecule(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def canonical_dna(sequence: str) -> str | None:
    """The sequence itself when it is non-empty ACGT, else ``None``."""
    return sequence if isinstance(sequence, str) and _DNA.fullmatch(sequence) else None


def canonical_protein(sequence: str) -> str | None:
    """The sequence itself when it is non-empty and uses only the 20 standard amino acids."""
    return sequence if isinstance(sequence, str) and _PROTEIN.fullmatch(sequence) else None


CANONICALISERS: dict[str, Callable[[str], str | None]] = {
    "smiles": canonical_smiles,
    "dna": canonical_dna,
    "protein": canonical_protein,
}


def canonicaliser(domain: str) -> Callable[[str], str | None]:
    try:
        return CANONICALISERS[domain]
    except KeyError:
        raise ValueError(f"unknown sequence domain {domain!r}; one of {sorted(CANONICALISERS)}") from None


def sequence_validator(domain: str, length: int | None = None) -> Callable[[str], bool]:
    """A predicate ``str -> bool``: valid in the domain (as the canonicalisers decide; SMILES
    without writing the canonical form) and, when given, exactly ``length`` long (DNA, protein).
    Another domain accepts any non-empty string."""
    if domain == "smiles":
        return lambda s: smiles_molecule(s) is not None
    if domain in CANONICALISERS:
        canon = CANONICALISERS[domain]
        return lambda s: canon(s) is not None and (length is None or len(s) == length)
    return lambda s: isinstance(s, str) and bool(s)
