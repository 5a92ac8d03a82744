"""Resample a set of strings so that its length histogram matches a reference set's: the
self-distillation set of molgpt-chembl without the size bias of keeping only valid samples.

A model's valid samples are shorter than its samples (long strings more often break a ring or a
bracket) and shorter than the data: the shipped prior's valid SMILES average 43 characters and
25.6 heavy atoms, the ChEMBL training SMILES 47 and 27.8. Trained on them as they are, the model
learnt to write still smaller molecules (24.0 heavy atoms; FCD 0.97 → 1.36). Here each length
bin (``--bin`` characters) of the samples is drawn, with replacement, in the proportion the
reference has it, each bin at most ``--cap`` times its own size; π(x | valid, length) · p_data(length).

    python benchmarks/length_matched.py --samples runs/distill/valid_seed0.smi runs/distill/valid_seed1.smi \\
        --reference TRAIN.txt --out runs/distill/valid_matched.smi

Prints the mean length before and after and against the reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from datamodules.sources import read_records  # noqa: E402
from networks.files import write_lines  # noqa: E402


def length_matched(samples: list[str], reference: list[str], n: int, bin_width: int = 5,
                   cap: float = 3.0, seed: int = 0) -> list[str]:
    """``n`` draws from ``samples`` (with replacement) whose length histogram follows
    ``reference``'s, bins of ``bin_width`` characters; a bin gives at most ``cap`` × its size, and
    a reference bin without samples gives none (the result is then a little shorter than ``n``)."""
    if not samples or not reference:
        raise ValueError("length_matched needs samples and a reference")
    if bin_width < 1 or cap <= 0 or n < 1:
        raise ValueError("bin_width and n must be positive, cap > 0")
    rng = np.random.default_rng(seed)
    sample_bins = np.array([len(s) // bin_width for s in samples])
    ref_bins = np.bincount([len(s) // bin_width for s in reference])
    ref_p = ref_bins / ref_bins.sum()
    out: list[str] = []
    for b, p in enumerate(ref_p):
        members = np.flatnonzero(sample_bins == b)
        if p == 0 or members.size == 0:
            continue
        want = min(int(round(n * p)), int(cap * members.size))
        # every member once before any twice: draws beyond the bin's size are with replacement
        take = np.concatenate([rng.permutation(members)[:want],
                               rng.choice(members, max(want - members.size, 0), replace=True)])
        out.extend(samples[i] for i in take)
    rng.shuffle(out)
    return out


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", nargs="+", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, help="strings to draw (default: as many as the samples)")
    parser.add_argument("--bin", type=int, default=5)
    parser.add_argument("--cap", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    if any(out.resolve() == Path(p).resolve() for p in [*args.samples, args.reference]):
        parser.error(f"--out {out} is one of the inputs")
    samples = [s for path in args.samples for s in read_records(path)]
    reference = list(read_records(args.reference))
    drawn = length_matched(samples, reference, args.n or len(samples), args.bin, args.cap, args.seed)
    write_lines(out, drawn)

    def mean(xs):
        return sum(map(len, xs)) / len(xs)

    print(f"{len(drawn):,} of {len(samples):,} samples ({len(set(drawn)):,} distinct); mean length "
          f"{mean(samples):.1f} -> {mean(drawn):.1f} (reference {mean(reference):.1f}) -> {out}")
    return drawn


if __name__ == "__main__":
    main()
