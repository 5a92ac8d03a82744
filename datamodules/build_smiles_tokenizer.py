"""Rebuild the shipped SMILES vocabulary (``networks/assets/smiles_tokenizer``).

The vocabulary is the union of regex tokens in MOSES (train/test/test_scaffolds, from the
``molsets`` wheel), ChEMBL v31 (shipped under ``datamodules/assets/chembl``) and QM9, so one
tokenizer serves every molecular model and checkpoints stay interchangeable. Run it only when a
corpus is added: changing the vocabulary invalidates every shipped checkpoint.

    python -m datamodules.build_smiles_tokenizer [--qm9 PATH] [--extra FILE ...]

It lives with the data modules because it reads their corpora; ``networks`` only holds the
tokenizer (``networks.tokenizers.build_smiles_tokenizer``) and never imports ``datamodules``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from datamodules.sources import moses_path, read_records
from networks.tokenizers import ASSET_DIR, build_smiles_tokenizer

CHEMBL = Path(__file__).parent / "assets" / "chembl"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qm9", type=Path, default=Path("../shared/data/qm9/qm9_qm9pack.csv.gz"))
    parser.add_argument("--extra", type=Path, nargs="*", default=[])
    parser.add_argument("--out", type=Path, default=ASSET_DIR / "smiles_tokenizer")
    args = parser.parse_args(argv)

    def corpus():
        for split in ("train", "test", "test_scaffolds"):
            yield from read_records(moses_path(split), column="SMILES")
        for path in sorted(CHEMBL.glob("*.txt.gz")):
            yield from read_records(path)
        if args.qm9.exists():
            yield from read_records(args.qm9, column="SMILES")
        for path in args.extra:
            yield from read_records(path)

    tokenizer = build_smiles_tokenizer(corpus())
    tokenizer.save_pretrained(str(args.out))
    print(f"{len(tokenizer)} tokens -> {args.out}")


if __name__ == "__main__":
    main()
