"""A user's own score as a Python function, for rewardfit's ``oracles.PythonFunction``
(docs/oracles.md). Put this directory on PYTHONPATH and name it ``userscore:heavy_atoms_times_two``:

    PYTHONPATH=examples/oracles python -m oracles score --oracle configs/oracles/python_function.yaml \\
        --input mols.smi --output scores.csv
"""

from rdkit import Chem


def heavy_atoms_times_two(smiles: str) -> float | None:
    """Twice the number of heavy atoms; ``None`` (invalid) for a SMILES RDKit cannot read."""
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else 2 * mol.GetNumHeavyAtoms()


def heavy_atoms_batched(smiles: list[str]) -> list[float | None]:
    """The same on a list (``batched: true``): one value per SMILES, in order."""
    return [heavy_atoms_times_two(s) for s in smiles]
