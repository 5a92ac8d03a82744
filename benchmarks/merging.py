"""Cost of Iterative Rewarded Soups' merge relative to a training step, for the molecular GPT.

    python benchmarks/merging.py [--experts 3] [--samples 128] [--every 4] [--device cpu]

Times ``MultiObjectiveModule.merge_experts`` (all parameters and floating buffers of N MolGPT
experts averaged in place) and one full training step of the same module (sampling, scoring by a
cheap stand-in oracle, RLOO update of every expert, Adam step), and prints the overhead of one
merge every m steps as a fraction of m steps. Appends the row to docs/benchmarks.md with --write.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lightning_modules import MultiObjectiveModule  # noqa: E402
from lightning_modules.policy_updates import RLOO  # noqa: E402
from networks.architectures import MolGPT  # noqa: E402
from oracles.base import Oracle, Scores  # noqa: E402
from oracles.combine import EnergyVector  # noqa: E402


class Length(Oracle):
    """A free oracle, so the step time is the model's (RDKit scoring would only add to it)."""

    def __call__(self, sequences):
        values = np.array([len(s) for s in sequences], dtype=np.float64)
        return Scores(torch.from_numpy(values / 50), torch.ones(len(values), dtype=torch.bool), {self.name: values})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--experts", type=int, default=3)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=60)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    oracle = EnergyVector([Length(name=f"length{i}") for i in range(args.experts)])
    module = MultiObjectiveModule(oracle, policy=MolGPT(), update=RLOO(), samples_per_step=args.samples,
                                  max_new_tokens=args.max_new_tokens, top_k=5).to(args.device)
    optimizer = torch.optim.Adam(module.experts.parameters(), lr=1e-5)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    module.merge_experts()
    sync()
    start = time.perf_counter()
    reps = 20
    for _ in range(reps):
        module.merge_experts()
    sync()
    merge_s = (time.perf_counter() - start) / reps

    step_times = []
    for step in range(3):
        sync()
        start = time.perf_counter()
        module.rounds.clear()
        loss = module.training_step(None, step)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        sync()
        step_times.append(time.perf_counter() - start)
    step_s = float(np.median(step_times))
    overhead = merge_s / (args.every * step_s)
    params = sum(p.numel() for p in module.experts[0].parameters())
    print(f"{args.experts} experts × {params:,} parameters on {args.device}: merge {merge_s * 1e3:.2f} ms, "
          f"training step {step_s:.2f} s ({args.samples} samples/expert), one merge per {args.every} steps "
          f"adds {100 * overhead:.3f}% to step time")
    if args.write:
        row = (f"| {datetime.date.today()} | {args.device} ({platform.processor() or platform.machine()}, "
               f"{torch.get_num_threads()} threads) | {args.experts} × {params:,} | {merge_s * 1e3:.2f} ms | "
               f"{step_s:.2f} s | {args.every} | {100 * overhead:.3f}% |\n")
        path = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
        text = path.read_text()
        header = "## IRS merge overhead (`benchmarks/merging.py`)"
        if header not in text:
            text += (f"\n{header}\n\n| date | device | experts × parameters | merge | training step | m | "
                     "overhead |\n|---|---|---|---|---|---|---|\n")
        path.write_text(text + row)


if __name__ == "__main__":
    main()
