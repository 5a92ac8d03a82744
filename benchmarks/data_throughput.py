"""Tokenised-and-collated SMILES per second from the MOSES streaming loader.

    python benchmarks/data_throughput.py [--workers 0 2] [--batch-size 256] [--batches 2000]

The first run tokenises MOSES train once into the corpus cache (also timed and reported); the
loader then only gathers and pads token ids. Prints a Markdown table row per setting.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from datamodules.sources import moses_path  # noqa: E402
from datamodules.streaming import BatchStream, RecordFile, StreamingLoader, TokenizedCorpus  # noqa: E402
from networks.tokenizers import load_tokenizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=2000)
    args = parser.parse_args()

    tok = load_tokenizer("smiles")
    start = time.perf_counter()
    corpus = TokenizedCorpus.build(RecordFile(str(moses_path("train")), "SMILES"), tok, max_tokens=128)
    build_s = time.perf_counter() - start
    print(f"corpus: {len(corpus):,} SMILES ready in {build_s:.1f} s (a cache hit is ~0 s) at {corpus.directory}")
    print(f"device: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    print("| workers | batch | batches | SMILES/s |\n|---|---|---|---|")
    for workers in args.workers:
        stream = BatchStream(corpus, args.batch_size, tok.pad_token_id, seed=0)
        loader = StreamingLoader(stream, num_workers=workers)
        n = 0
        it = iter(loader)
        next(it)  # worker start-up is not throughput
        start = time.perf_counter()
        for i, batch in enumerate(it):
            n += batch["input_ids"].size(0)
            if i + 1 >= args.batches:
                break
        rate = n / (time.perf_counter() - start)
        print(f"| {workers} | {args.batch_size} | {args.batches} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
