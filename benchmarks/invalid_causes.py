"""Why a SMILES model's samples are invalid: the fraction of n samples (T = 1, no top-k) per
cause (``oracles.canonical.smiles_failure``: unclosed ring, other syntax, kekulisation, valence),
and how many samples number their rings the fresh way (each ring bond a label of its own, in order
of opening: ``networks/ring_labels.py``). A quick check of an intermediate export while it trains;
``sample_quality.py`` prints the same causes beside the full quality table.

    OMP_NUM_THREADS=1 python benchmarks/invalid_causes.py --model runs/pretrain/molgpt_chembl_cpu_fresh_rings/pretrained --n 3000
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from networks.architectures import Pretrained, resolve_checkpoint  # noqa: E402
from networks.ring_labels import has_fresh_ring_labels  # noqa: E402
from networks.sampling import sample  # noqa: E402
from networks.tokenizers import load_tokenizer  # noqa: E402
from oracles.canonical import SMILES_FAILURES, smiles_failure  # noqa: E402


def causes(texts: list[str]) -> dict[str, float]:
    counts = collections.Counter(map(smiles_failure, texts))
    n = len(texts)
    return {"validity": counts[None] / n, **{c: counts[c] / n for c in SMILES_FAILURES},
            "fresh_ring_labels": sum(map(has_fresh_ring_labels, texts)) / n}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    if args.n <= 0:
        parser.error("--n must be positive")
    directory = resolve_checkpoint(args.model)
    tok = load_tokenizer(directory)
    model = Pretrained(str(directory)).build(tok).eval().to(args.device)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    texts = sample(model, tok, args.n, args.max_new_tokens, generator=generator, batch_size=1000).texts
    row = {"model": str(args.model), "n": args.n, **{k: round(v, 4) for k, v in causes(texts).items()}}
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
