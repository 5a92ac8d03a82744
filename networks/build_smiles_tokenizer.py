"""Moved to ``python -m datamodules.build_smiles_tokenizer``: the builder reads the corpora that
``datamodules`` knows, and ``networks`` does not import ``datamodules``."""

import sys

if __name__ == "__main__":
    sys.exit("networks.build_smiles_tokenizer moved: run python -m datamodules.build_smiles_tokenizer "
             + " ".join(sys.argv[1:]))
