"""Make ``qm9_gap_4k.csv.gz``: 4,000 QM9 molecules with their DFT HOMO–LUMO gap, the example of
aligning on *measured* energies (``configs/era/qm9_gap_measured.yaml``).

Why a sample and not QM9: the example needs real, externally computed energies that the README's
users have without ``../shared``; 4,000 molecules give 8 million pairs, far more than an alignment
run uses, in 40 KB. Rows are drawn at random (seed 0) from the team's QM9 copy (130,831
characterised molecules; provenance in ``datamodules/assets/README.md``), keeping those that the
shipped SMILES tokenizer encodes, so every row can be scored by the policy:

    python datamodules/assets/qm9/make_gap_sample.py ../shared/data/qm9/qm9_qm9pack.csv.gz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
OUT = Path(__file__).with_name("qm9_gap_4k.csv.gz")


def main(argv=None) -> None:
    from networks.tokenizers import TokenizationError, encode_checked, load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("qm9", type=Path, help="qm9_qm9pack.csv.gz")
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    frame = pd.read_csv(args.qm9, usecols=["Index", "SMILES", "HOMO_LUMO_gap_au"])
    frame = frame.sample(frac=1.0, random_state=0)
    tokenizer = load_tokenizer("smiles")

    def encodes(smiles: str) -> bool:
        try:
            encode_checked(tokenizer, [smiles])
            return True
        except TokenizationError:
            return False

    keep = []
    for row in frame.itertuples(index=False):
        if encodes(row.SMILES):
            keep.append(row)
        if len(keep) == args.n:
            break
    out = pd.DataFrame({"qm9_index": [r.Index for r in keep], "smiles": [r.SMILES for r in keep],
                        "gap_hartree": [r.HOMO_LUMO_gap_au for r in keep]}).sort_values("qm9_index")
    out.to_csv(args.out, index=False, compression={"method": "gzip", "mtime": 0})
    print(f"{args.out}: {len(out)} molecules, gap {out.gap_hartree.min():.4f}–{out.gap_hartree.max():.4f} Ha "
          f"(mean {out.gap_hartree.mean():.4f}, std {out.gap_hartree.std():.4f})")


if __name__ == "__main__":
    main()
