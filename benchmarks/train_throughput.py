"""Pretraining throughput of the molecular GPT: tokens per second through forward, backward and AdamW.

    python benchmarks/train_throughput.py [--model checkpoints/molgpt-moses] [--batch-sizes 256 1024]
        [--length 64] [--steps 20] [--precisions fp32 bf16] [--device cuda]

The shipped model's architecture (weights as shipped), batches of random token ids at a fixed
length (throughput depends on shape, not on which tokens), bf16 as Lightning's ``bf16-mixed``
does it (autocast). Prints a Markdown table; steps after the first three are timed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from networks.architectures import Pretrained  # noqa: E402
from networks.precision import autocast, compute_dtype  # noqa: E402
from networks.sampling import sequence_logprob  # noqa: E402
from networks.tokenizers import load_tokenizer  # noqa: E402


def tokens_per_second(model, vocab: int, batch: int, length: int, steps: int, dtype: torch.dtype, device) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(3, vocab, (batch, length), device=device)
    mask = torch.ones_like(ids)
    warmup = 3
    for step in range(steps + warmup):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast(device, dtype):
            loss = -sequence_logprob(model, ids, mask).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch * (length - 1) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints/molgpt-moses")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256])
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    tok = load_tokenizer(args.model)
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, "
          f"length {args.length}, {args.steps} timed steps")
    print("| precision | batch | tokens/s |\n|---|---|---|")
    for precision in args.precisions:
        for batch in args.batch_sizes:
            model = Pretrained(args.model).build(tok).to(device).train()
            rate = tokens_per_second(model, len(tok), batch, args.length, args.steps,
                                     compute_dtype(device, precision), device)
            print(f"| {precision} | {batch} | {rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
