"""Time of the work after sampling in one online round: the oracle's energies and the frozen
reference's log-probabilities of the same samples, one after the other against alongside
(``lightning_modules.alongside``: the oracle in a thread while the network runs).

    python benchmarks/online_round.py [--model checkpoints/molgpt-moses] [--n 256 1024] [--workers 1 2] [--repeats 3]

Samples come from the model itself (top-k 5), as in a round; the oracle (QED, U = −log QED) starts
each timing with empty caches, as a round of fresh samples mostly does. With workers > 1 the
oracle's process pool is started before timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from lightning_modules import OnlineAlignment  # noqa: E402
from networks.architectures import Pretrained  # noqa: E402
from networks.sampling import sample, sequence_logprob  # noqa: E402
from oracles.rdkit_properties import QED  # noqa: E402
from oracles.transforms import NegLog  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints/molgpt-moses")
    parser.add_argument("--n", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), device {device}")
    print("| samples | oracle workers | one after the other (s) | alongside (s) | speed-up |\n|---|---|---|---|---|")
    for workers in args.workers:
        oracle = QED(transform=NegLog(), penalty=4.5, n_workers=workers)
        module = OnlineAlignment(oracle, policy=Pretrained(args.model), tokenizer=args.model, top_k=5).to(device)
        if workers > 1:
            oracle(["CCO"] * (oracle.parallel_threshold * workers))  # start the pool outside the timing
        for n in args.n:
            batch = sample(module.model, module.tokenizer, n, 100, 1.0, 5,
                           generator=torch.Generator(device=device).manual_seed(n))
            ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)

            def reference():
                with torch.no_grad():
                    out = sequence_logprob(module.reference, ids, mask)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                return out

            module._score(batch.texts[:16]), reference()  # one-time loading outside the timing
            times = {"sequential": [], "alongside": []}
            for _ in range(args.repeats):
                for how in times:
                    oracle._canonical.clear(), oracle._cache.clear()
                    start = time.perf_counter()
                    if how == "sequential":
                        module._score(batch.texts)
                        reference()
                    else:
                        module._score_alongside(batch.texts, reference)
                    times[how].append(time.perf_counter() - start)
            seq, along = statistics.median(times["sequential"]), statistics.median(times["alongside"])
            print(f"| {n} | {workers} | {seq:.3f} | {along:.3f} | {seq / along:.2f}× |", flush=True)
        oracle.close()


if __name__ == "__main__":
    main()
