"""Molecules per second: rewardfit's KV-cached sampler against ``transformers`` ``generate``.

    python benchmarks/sampling.py --model DIR_OR_CHECKPOINT [--batch-sizes 256 1024] [--n 2048]

Both sample the same weights with the same top-k and length limit. Reported: decoded SMILES/s,
and valid molecules/s including the RDKit parse. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import transformers  # noqa: E402

from networks.architectures import Pretrained  # noqa: E402
from networks.sampling import sample  # noqa: E402
from networks.tokenizers import load_tokenizer  # noqa: E402
from oracles.canonical import canonical_smiles  # noqa: E402


def with_generate(model, tok, n, batch, top_k, max_new_tokens):
    texts = []
    for start in range(0, n, batch):
        rows = min(batch, n - start)
        prompt = torch.full((rows, 1), tok.bos_token_id, device=model.device)
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, top_k=top_k,
                             max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
        texts += tok.batch_decode(out, skip_special_tokens=True)
    return texts


def with_rewardfit(model, tok, n, batch, top_k, max_new_tokens):
    return sample(model, tok, n, max_new_tokens, top_k=top_k, batch_size=batch).texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    tok = load_tokenizer(args.model if Path(args.model).is_dir() else f"checkpoints/{args.model}")
    model = Pretrained(args.model).build(tok).to(args.device).eval()
    name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"device {name}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"transformers {transformers.__version__}, top-k {args.top_k}, ≤{args.max_new_tokens} tokens")
    print("| sampler | batch | molecules/s | valid molecules/s (incl. RDKit) | validity |\n|---|---|---|---|---|")
    for batch in args.batch_sizes:
        n = max(args.n, batch)
        for label, fn in (("transformers generate", with_generate), ("rewardfit sample", with_rewardfit)):
            torch.manual_seed(0)
            fn(model, tok, min(batch, 64), min(batch, 64), args.top_k, 10)  # warm-up
            start = time.perf_counter()
            texts = fn(model, tok, n, batch, args.top_k, args.max_new_tokens)
            gen_s = time.perf_counter() - start
            valid = sum(canonical_smiles(t) is not None for t in texts)
            total_s = time.perf_counter() - start
            print(f"| {label} | {batch} | {n / gen_s:,.0f} | {valid / total_s:,.0f} | {valid / n:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
