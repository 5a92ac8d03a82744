"""The quality table of a DNA checkpoint (issue 4's acceptance numbers for dnagpt-dhs).

    python benchmarks/dna_quality.py --model checkpoints/dnagpt-dhs [--n 2000] [--split val]

Reports the per-token perplexity (4-mer tokens, <eos> included) and per-base perplexity on the
DHS validation sites (chr1), then samples n sequences at temperature 1 and reports validity
(ACGT only), the share of full-length 200-bp samples, GC content against the data's, uniqueness,
and the k-mer spectrum shift (Jensen–Shannon divergence, k = 3…6) to the validation sites. For
scale, the same shift is given for a random A/C/G/T generator with the data's GC content and for
the training sites themselves. Prints Markdown.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from datamodules.sources import dhs_path, read_records  # noqa: E402
from lightning_modules.metrics import KmerSpectrumShift, validity_and_uniqueness  # noqa: E402
from networks.architectures import Pretrained, resolve_checkpoint  # noqa: E402
from networks.sampling import sample, sequence_logprob  # noqa: E402
from networks.tokenizers import load_tokenizer  # noqa: E402

SPLITS = {"train": "training", "val": "validation", "test": "test"}


def gc(sequences: list[str]) -> float:
    bases = "".join(sequences).upper()
    return (bases.count("G") + bases.count("C")) / max(len(bases), 1)


@torch.no_grad()
def perplexity(model, tokenizer, sequences: list[str], batch_size: int = 256) -> tuple[float, float]:
    """(per token, per base) perplexity of ``sequences`` under ``model``."""
    total_lp, tokens, bases = 0.0, 0, 0
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start:start + batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True)
        lp = sequence_logprob(model, enc["input_ids"], enc["attention_mask"])
        total_lp += float(lp.sum())
        tokens += int(enc["attention_mask"][:, 1:].sum())
        bases += sum(map(len, chunk))
    return math.exp(-total_lp / tokens), math.exp(-total_lp / bases)


def shifts(samples: list[str], reference: list[str]) -> dict[int, float]:
    out = {}
    for k in (3, 4, 5, 6):
        metric = KmerSpectrumShift(reference, k=k)
        metric.update(samples)
        out[k] = float(metric.compute())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--split", default="val", choices=sorted(SPLITS))
    parser.add_argument("--data", default=None, help="DHS table (default: the shipped one)")
    parser.add_argument("--max-new-tokens", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    path = resolve_checkpoint(args.model)
    tokenizer = load_tokenizer(str(path))
    model = Pretrained(str(path)).build(tokenizer).eval()
    table = args.data or dhs_path()
    held_out = list(read_records(table, "sequence", {"data_label": SPLITS[args.split]}))
    train = list(read_records(table, "sequence", {"data_label": "training"}))

    start = time.time()
    ppl_token, ppl_base = perplexity(model, tokenizer, held_out)
    generator = torch.Generator().manual_seed(args.seed)
    batch = sample(model, tokenizer, args.n, args.max_new_tokens, 1.0, None, generator=generator)
    texts = [t.replace(" ", "") for t in batch.texts]
    quality = validity_and_uniqueness(texts, "dna")
    rng = random.Random(args.seed)
    p_gc = gc(held_out)
    weights = [(1 - p_gc) / 2, p_gc / 2, p_gc / 2, (1 - p_gc) / 2]
    iid = ["".join(rng.choices("ACGT", weights, k=200)) for _ in range(args.n)]
    rows = {"model samples": shifts(texts, held_out),
            f"i.i.d. bases, GC {p_gc:.3f}": shifts(iid, held_out),
            f"{args.n} training sites": shifts(rng.sample(train, min(args.n, len(train))), held_out)}

    print(f"model: {path}; {len(held_out)} {args.split} sites; {args.n} samples at T = 1 ({time.time() - start:.0f} s)\n")
    print("| perplexity / 4-mer token | perplexity / base | validity | uniqueness | 200-bp samples | GC samples | GC data |")
    print("|---|---|---|---|---|---|---|")
    full = sum(len(t) == 200 for t in texts) / max(len(texts), 1)
    print(f"| {ppl_token:.3f} | {ppl_base:.4f} | {quality['validity']:.4f} | {quality['uniqueness']:.4f} | "
          f"{full:.4f} | {gc(texts):.4f} | {p_gc:.4f} |\n")
    print("k-mer spectrum shift (Jensen–Shannon divergence to the held-out sites; 0 = same spectrum)\n")
    print("| sequences | k = 3 | k = 4 | k = 5 | k = 6 |")
    print("|---|---|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{values[k]:.5f}" for k in (3, 4, 5, 6)) + " |")


if __name__ == "__main__":
    main()
