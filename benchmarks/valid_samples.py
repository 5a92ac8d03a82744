"""Draw a model's samples at T = 1 and keep the valid, finished ones: a sample of the model
conditioned on validity, π(x | x is valid) ∝ π(x)·[x is valid], written one string a line.

The training set of molgpt-chembl's self-distillation phase
(``configs/pretrain/molgpt_chembl_cpu_distill.yaml``): maximum likelihood on these strings (with
real ChEMBL beside them) moves the model toward its own distribution restricted to valid
molecules — a fixed target, unlike an online validity reward, so it cannot drift toward whatever
is easiest to make valid (shorter molecules). Strings are kept as sampled (not canonicalised):
the target is the model's own distribution over strings.

    OMP_NUM_THREADS=1 python benchmarks/valid_samples.py --model checkpoints/molgpt-chembl \\
        --n 100000 --seed 0 --out runs/distill/valid_seed0.smi

Run one process per core with different seeds and concatenate. Prints validity and how many
were dropped as invalid or unfinished (no ``<eos>`` within ``--max-new-tokens``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from networks.architectures import Pretrained, resolve_checkpoint  # noqa: E402
from networks.files import write_lines  # noqa: E402
from networks.sampling import sample  # noqa: E402
from networks.tokenizers import load_tokenizer  # noqa: E402
from oracles.canonical import sequence_validator  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--n", type=int, required=True, help="samples to draw (valid ones kept)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--domain", default="smiles")
    args = parser.parse_args(argv)
    if args.n <= 0:
        parser.error("--n must be positive")
    out = Path(args.out)
    directory = resolve_checkpoint(args.model)
    if out.resolve().is_relative_to(Path(directory).resolve()):
        parser.error(f"--out {out} lies inside the model folder {directory}")
    tok = load_tokenizer(directory)
    model = Pretrained(str(directory)).build(tok).eval()
    valid = sequence_validator(args.domain)
    generator = torch.Generator().manual_seed(args.seed)
    kept: list[str] = []
    counts = {"drawn": 0, "kept": 0, "invalid": 0, "unfinished": 0}
    start = time.perf_counter()
    with tqdm(total=args.n, unit="sample", mininterval=30) as bar:
        for first in range(0, args.n, args.batch_size):
            size = min(args.batch_size, args.n - first)
            batch = sample(model, tok, size, args.max_new_tokens, generator=generator, batch_size=size)
            for text, finished in zip(batch.texts, batch.finished.tolist()):
                if not finished:
                    counts["unfinished"] += 1
                elif "\n" in text or not text or not valid(text):
                    counts["invalid"] += 1
                else:
                    kept.append(text)
            counts["drawn"] += size
            bar.update(size)
    counts["kept"] = len(kept)
    write_lines(out, kept)
    rate = counts["drawn"] / (time.perf_counter() - start)
    print(f"{directory}: {counts['drawn']:,} drawn ({rate:,.0f}/s), {counts['kept']:,} valid kept "
          f"({counts['kept'] / counts['drawn']:.4f}), {counts['invalid']:,} invalid, "
          f"{counts['unfinished']:,} unfinished -> {out}", flush=True)
    return counts


if __name__ == "__main__":
    main()
