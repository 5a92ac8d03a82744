"""Molecular properties computed exactly with RDKit, one oracle class per property.

Each is a :class:`~oracles.base.MoleculeOracle`: choose the energy with ``transform``
(``Negate`` to maximise, ``Harmonic(mu, sigma)`` for a target, ``NegLog`` for QED as in ERA).
"""

from __future__ import annotations

import importlib.util
import os

from rdkit import Chem, DataStructs
from rdkit.Chem import QED as _QED
from rdkit.Chem import Crippen, Descriptors, Lipinski, RDConfig, rdFingerprintGenerator, rdMolDescriptors

from oracles.base import MoleculeOracle


class QED(MoleculeOracle):
    """Quantitative estimate of drug-likeness (``rdkit.Chem.QED.qed``), in [0, 1]."""

    name = "qed"

    def compute(self, mol):
        return _QED.qed(mol)


class LogP(MoleculeOracle):
    """Wildman–Crippen LogP (``Crippen.MolLogP``)."""

    name = "logp"

    def compute(self, mol):
        return Crippen.MolLogP(mol)


class MolarRefractivity(MoleculeOracle):
    """Wildman–Crippen molar refractivity (``Crippen.MolMR``)."""

    name = "mr"

    def compute(self, mol):
        return Crippen.MolMR(mol)


class TPSA(MoleculeOracle):
    """Topological polar surface area (``rdMolDescriptors.CalcTPSA``)."""

    name = "tpsa"

    def compute(self, mol):
        return rdMolDescriptors.CalcTPSA(mol)


class FractionSP3(MoleculeOracle):
    """Fraction of sp3 carbons (``rdMolDescriptors.CalcFractionCSP3``)."""

    name = "fsp3"

    def compute(self, mol):
        return rdMolDescriptors.CalcFractionCSP3(mol)


class HeavyAtoms(MoleculeOracle):
    """Number of heavy atoms (``Mol.GetNumHeavyAtoms``)."""

    name = "heavy_atoms"

    def compute(self, mol):
        return mol.GetNumHeavyAtoms()


class RingCount(MoleculeOracle):
    """Number of rings (``rdMolDescriptors.CalcNumRings``)."""

    name = "rings"

    def compute(self, mol):
        return rdMolDescriptors.CalcNumRings(mol)


class AromaticRings(MoleculeOracle):
    """Number of aromatic rings (``rdMolDescriptors.CalcNumAromaticRings``)."""

    name = "aromatic_rings"

    def compute(self, mol):
        return rdMolDescriptors.CalcNumAromaticRings(mol)


class HBondDonors(MoleculeOracle):
    """Lipinski H-bond donors (``Lipinski.NumHDonors``)."""

    name = "hbd"

    def compute(self, mol):
        return Lipinski.NumHDonors(mol)


class HBondAcceptors(MoleculeOracle):
    """Lipinski H-bond acceptors (``Lipinski.NumHAcceptors``)."""

    name = "hba"

    def compute(self, mol):
        return Lipinski.NumHAcceptors(mol)


class RotatableBonds(MoleculeOracle):
    """Rotatable bonds (``Lipinski.NumRotatableBonds``)."""

    name = "rotatable_bonds"

    def compute(self, mol):
        return Lipinski.NumRotatableBonds(mol)


class MolWeight(MoleculeOracle):
    """Average molecular weight (``Descriptors.MolWt``)."""

    name = "mol_weight"

    def compute(self, mol):
        return Descriptors.MolWt(mol)


def _load_sascorer():
    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    spec = importlib.util.spec_from_file_location("rewardfit_sascorer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SAScore(MoleculeOracle):
    """Synthetic accessibility (Ertl & Schuffenhauer), RDKit Contrib ``sascorer``: 1 easy … 10 hard."""

    name = "sa"
    _scorer = None

    def compute(self, mol):
        if SAScore._scorer is None:
            SAScore._scorer = _load_sascorer()
        return SAScore._scorer.calculateScore(mol)


class TanimotoSimilarity(MoleculeOracle):
    """Tanimoto similarity to ``target`` on Morgan fingerprints (radius 2, 2048 bits)."""

    name = "tanimoto"

    def __init__(self, target: str, radius: int = 2, n_bits: int = 2048, **kwargs):
        super().__init__(**kwargs)
        mol = Chem.MolFromSmiles(target)
        if mol is None:
            raise ValueError(f"target SMILES {target!r} does not parse")
        self.target, self.radius, self.n_bits = target, radius, n_bits
        self._target_fp = None

    def _fp(self, mol):
        return rdFingerprintGenerator.GetMorganGenerator(radius=self.radius, fpSize=self.n_bits).GetFingerprint(mol)

    def __getstate__(self):
        state = super().__getstate__()
        state["_target_fp"] = None
        return state

    def compute(self, mol):
        if self._target_fp is None:
            self._target_fp = self._fp(Chem.MolFromSmiles(self.target))
        return DataStructs.TanimotoSimilarity(self._fp(mol), self._target_fp)


class Substructure(MoleculeOracle):
    """1.0 when the SMARTS pattern is present, else 0.0 (``present=False`` inverts it)."""

    name = "substructure"

    def __init__(self, smarts: str, present: bool = True, **kwargs):
        super().__init__(**kwargs)
        if Chem.MolFromSmarts(smarts) is None:
            raise ValueError(f"SMARTS {smarts!r} does not parse")
        self.smarts, self.present = smarts, present

    def compute(self, mol):
        hit = mol.HasSubstructMatch(Chem.MolFromSmarts(self.smarts))
        return float(hit == self.present)
