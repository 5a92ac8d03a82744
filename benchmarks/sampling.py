"""Molecules per second: rewardfit's sampler against ``transformers`` ``generate``, side by side.

    python benchmarks/sampling.py --model checkpoints/molgpt-moses [--batch-sizes 256 1024 4096]
        [--n 2048] [--precisions fp32 bf16] [--repeats 2] [--csv out.csv]

Both sample the same weights with the same top-k and length limit; ``generate`` runs in fp32 with
its defaults (the baseline a user would pick). Runs are interleaved (generate, then each rewardfit
precision, repeated), so a machine shared with other work slows each side alike; the table gives
the median over repeats of wall-clock molecules/s and of molecules per CPU-second (process time,
all threads), and each row's speed-up over ``generate`` at the same batch size. Validity counts
RDKit-parsable SMILES.
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import transformers  # noqa: E402

from networks.architectures import Pretrained  # noqa: E402
from networks.precision import native_bf16  # noqa: E402
from networks.sampling import sample  # noqa: E402
from networks.tokenizers import load_tokenizer  # noqa: E402
from oracles.canonical import canonical_smiles  # noqa: E402


def with_generate(model, tok, n, batch, top_k, max_new_tokens, precision):
    texts = []
    for start in range(0, n, batch):
        rows = min(batch, n - start)
        prompt = torch.full((rows, 1), tok.bos_token_id, device=model.device)
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, top_k=top_k,
                             max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
        texts += tok.batch_decode(out, skip_special_tokens=True)
    return texts


def with_rewardfit(model, tok, n, batch, top_k, max_new_tokens, precision):
    return sample(model, tok, n, max_new_tokens, top_k=top_k, batch_size=batch, precision=precision).texts


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(model, tok, args) -> list[dict]:
    runs = [("transformers generate", with_generate, "fp32")]
    runs += [("rewardfit sample", with_rewardfit, p) for p in args.precisions]
    rows = []
    for batch in args.batch_sizes:
        n = max(args.n, batch)
        timings = {i: [] for i in range(len(runs))}
        validity = {}
        for repeat in range(args.repeats):
            for i, (label, fn, precision) in enumerate(runs):
                torch.manual_seed(repeat)
                fn(model, tok, min(batch, 64), min(batch, 64), args.top_k, 10, precision)  # warm-up
                wall, cpu = time.perf_counter(), time.process_time()
                texts = fn(model, tok, n, batch, args.top_k, args.max_new_tokens, precision)
                timings[i].append((n / (time.perf_counter() - wall), n / (time.process_time() - cpu)))
                validity.setdefault(i, []).append(sum(canonical_smiles(t) is not None for t in texts) / n)
        base_wall = statistics.median(t[0] for t in timings[0])
        base_cpu = statistics.median(t[1] for t in timings[0])
        for i, (label, _, precision) in enumerate(runs):
            wall = statistics.median(t[0] for t in timings[i])
            cpu = statistics.median(t[1] for t in timings[i])
            rows.append({"sampler": label, "precision": precision, "batch": batch, "n": n,
                         "mol_per_s": round(wall, 1), "mol_per_cpu_s": round(cpu, 1),
                         "speedup_wall": round(wall / base_wall, 2), "speedup_cpu": round(cpu / base_cpu, 2),
                         "validity": round(statistics.mean(validity[i]), 4)})
            r = rows[-1]
            print(f"| {label} | {precision} | {batch} | {r['mol_per_s']:,.0f} | {r['mol_per_cpu_s']:,.0f} | "
                  f"{r['speedup_wall']:.2f}× | {r['speedup_cpu']:.2f}× | {r['validity']:.3f} |", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["auto", "fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--csv", type=Path, help="also write the rows here")
    args = parser.parse_args()

    tok = load_tokenizer(args.model if Path(args.model).is_dir() else f"checkpoints/{args.model}")
    model = Pretrained(args.model).build(tok).to(args.device).eval()
    print(f"device {device_name(args.device)} (native bf16: {native_bf16(args.device)}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, top-k {args.top_k}, "
          f"≤{args.max_new_tokens} tokens, median of {args.repeats} interleaved repeats")
    print("| sampler | precision | batch | molecules/s | molecules/CPU-s | × generate (wall) | × generate (CPU) "
          "| validity |\n|---|---|---|---|---|---|---|---|")
    rows = measure(model, tok, args)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
