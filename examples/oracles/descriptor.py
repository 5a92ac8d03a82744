#!/usr/bin/env python
"""An external scoring program for rewardfit's ``oracles.ExternalProcess`` (docs/oracles.md).

The protocol: read one SMILES per line on stdin, write one number per line on stdout, in the same
order; a line that cannot be scored is written as ``nan``. Any descriptor of RDKit's
``Descriptors`` module works:

    printf 'CCO\\nc1ccccc1O\\nnot-a-smiles\\n' | python examples/oracles/descriptor.py --descriptor qed
"""

import argparse
import math
import sys

from rdkit import Chem, RDLogger
from rdkit.Chem import Descriptors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--descriptor", default="qed", help="a function of rdkit.Chem.Descriptors (qed, MolLogP, TPSA, …)")
    args = parser.parse_args()
    if not hasattr(Descriptors, args.descriptor):
        sys.exit(f"unknown descriptor {args.descriptor!r}")  # a non-zero exit: rewardfit reports this stderr
    describe = getattr(Descriptors, args.descriptor)
    RDLogger.DisableLog("rdApp.*")
    for line in sys.stdin:
        mol = Chem.MolFromSmiles(line.strip())
        try:
            value = float(describe(mol)) if mol is not None else math.nan
        except Exception:  # a descriptor failing on one molecule: that molecule is invalid
            value = math.nan
        print(repr(value))  # repr: every digit, so the score is exactly RDKit's
    sys.stdout.flush()


if __name__ == "__main__":
    main()
