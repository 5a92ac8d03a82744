"""Pretraining throughput of the molecular GPT: tokens per second through forward, backward and AdamW.

    python benchmarks/train_throughput.py [--model checkpoints/molgpt-moses] [--batch-sizes 256 1024]
        [--length 64] [--steps 20] [--precisions fp32 bf16] [--device cuda]
    python benchmarks/train_throughput.py --model checkpoints/molgpt-chembl --data chembl \
        --batch-sizes 128 --group-by-length 0 50 --precisions fp32

The shipped model's architecture (weights as shipped), bf16 as Lightning's ``bf16-mixed`` does it
(autocast). Without ``--data``: batches of random token ids at a fixed length (throughput depends
on shape, not on which tokens). With ``--data chembl|moses``: the training loader's own padded
batches, once per ``--group-by-length`` setting, and the rate counts real (unpadded) tokens, the
ones that train the model. Prints a Markdown table; steps after the first three are timed.
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


def tokens_per_second(model, vocab: int, batch: int, length: int, steps: int, dtype: torch.dtype, device,
                      batches=None) -> tuple[float, float]:
    """(trained tokens per second, padded positions per trained token) over ``steps`` timed steps;
    ``batches`` (an iterator of loader batches) replaces the random fixed-length ones."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    fixed = torch.randint(3, vocab, (batch, length), device=device)
    warmup = 3
    real = padded = 0
    for step in range(steps + warmup):
        if batches is None:
            ids, mask = fixed, torch.ones_like(fixed)
        else:
            b = next(batches)
            ids, mask = b["input_ids"].to(device), b["attention_mask"].to(device)
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        if step >= warmup:  # next-token targets: every position after the first
            real += int(mask[:, 1:].sum())
            padded += mask[:, 1:].numel()
        with autocast(device, dtype):
            loss = -sequence_logprob(model, ids, mask).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return real / (time.perf_counter() - start), padded / real


def loader_batches(data: str, batch: int, group_by_length: int):
    """The datamodule's training batches, epoch after epoch."""
    import itertools

    from datamodules.sequences import ChemblDataModule, MosesDataModule

    dm = {"chembl": ChemblDataModule, "moses": MosesDataModule}[data](
        batch_size=batch, max_tokens=128, group_by_length=group_by_length)
    stream = dm.train_dataloader().dataset
    for epoch in itertools.count():
        stream.epoch = epoch
        yield from stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints/molgpt-moses")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256])
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", choices=["chembl", "moses"], help="real training batches instead of random ones")
    parser.add_argument("--group-by-length", type=int, nargs="+", default=[0],
                        help="with --data: the datamodule's group_by_length settings to compare")
    args = parser.parse_args()
    device = torch.device(args.device)
    tok = load_tokenizer(args.model)
    shape = f"{args.data} training batches" if args.data else f"length {args.length}"
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, "
          f"{torch.get_num_threads()} threads, {shape}, {args.steps} timed steps")
    if args.data:
        print("| precision | batch | group_by_length | trained tokens/s | padded / trained positions |\n|---|---|---|---|---|")
    else:
        print("| precision | batch | tokens/s |\n|---|---|---|")
    for precision in args.precisions:
        for batch in args.batch_sizes:
            for group in args.group_by_length if args.data else [None]:
                torch.manual_seed(0)
                model = Pretrained(args.model).build(tok).to(device).train()
                batches = loader_batches(args.data, batch, group) if args.data else None
                rate, waste = tokens_per_second(model, len(tok), batch, args.length, args.steps,
                                                compute_dtype(device, precision), device, batches)
                if group is None:
                    print(f"| {precision} | {batch} | {rate:,.0f} |", flush=True)
                else:
                    print(f"| {precision} | {batch} | {group} | {rate:,.0f} | {waste:.2f} |", flush=True)


if __name__ == "__main__":
    main()
