"""Does a SMILES model know which ring is open? Sample it twice from one seed, plainly and with
``<eos>`` forbidden while a ring label or a branch is open (and ``)`` at branch depth 0), and
compare validity and the causes of invalid samples (``oracles.canonical.smiles_failure``).

    python benchmarks/open_ring_mask.py --model checkpoints/molgpt-chembl --n 3000 --seed 5

If the model only ended strings too early, the mask would turn its unclosed-ring failures into
valid molecules; if it does not track which label is open, the masked strings run on to
``--max-new-tokens`` instead (the ``hit limit`` column). A diagnostic, not a sampler option: the
mask changes the distribution a prior is judged on. T = 1, no top-k; one thread by default.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class OpenState:
    """Per row: which ring labels are open (a label occurred an odd number of times) and the
    branch depth, updated token by token; ``mask`` forbids ``<eos>`` while either is open and
    ``)`` at depth 0."""

    def __init__(self, vocab: dict[str, int], eos: int, rows: int):
        from networks.ring_labels import ring_label_ids

        labels = ring_label_ids(vocab)
        self.label = torch.full((max(vocab.values()) + 1,), -1, dtype=torch.long)
        self.label[labels] = torch.arange(len(labels))
        self.open_id, self.close_id, self.eos = vocab["("], vocab[")"], eos
        self.rings = torch.zeros(rows, len(labels), dtype=torch.bool)
        self.depth = torch.zeros(rows, dtype=torch.long)

    def update(self, tokens: torch.Tensor, live: torch.Tensor) -> None:
        label = self.label[tokens]
        rows = ((label >= 0) & live).nonzero().squeeze(1)
        self.rings[rows, label[rows]] ^= True
        self.depth += ((tokens == self.open_id) & live).long() - ((tokens == self.close_id) & live).long()

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.clone()
        logits[self.rings.any(1) | (self.depth > 0), self.eos] = float("-inf")
        logits[self.depth <= 0, self.close_id] = float("-inf")
        return logits


def draw(model, tok, n: int, masked: bool, seed: int, max_new_tokens: int, batch: int = 500) -> list[str]:
    """``n`` SMILES at T = 1 with the library's KV-cached stepper (rows are not dropped as they
    finish, so the generator's draws line up across the two samplers until the first masked step)."""
    from networks.decoding import stepper_for

    generator = torch.Generator().manual_seed(seed)
    bos, eos, pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    texts = []
    for start in range(0, n, batch):
        rows = min(batch, n - start)
        stepper = stepper_for(model, rows, max_new_tokens, torch.float32)
        stepper.reset()
        state = OpenState(tok.get_vocab(), eos, rows)
        tokens = torch.full((rows,), bos, dtype=torch.long)
        done = torch.zeros(rows, dtype=torch.bool)
        out = []
        for position in range(max_new_tokens):
            logits = stepper.step(tokens, position).float()
            if masked:
                logits = state.mask(logits)
            new = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
            live = ~done
            new = new.masked_fill(done, pad)
            state.update(new, live)
            out.append(new)
            done |= new == eos
            if done.all():
                break
            tokens = new.masked_fill(done, bos)
        ids = torch.stack(out, 1)
        for row in ids.tolist():
            pieces = []
            for token in tok.convert_ids_to_tokens(row):
                if token in (tok.eos_token, tok.pad_token):
                    break
                pieces.append(token)
            texts.append("".join(pieces))
    return texts


def summarise(texts: list[str], tok, max_new_tokens: int) -> dict:
    """Validity and each cause's share (``invalid_causes.causes``), the share that reached
    ``max_new_tokens`` and the mean length in characters."""
    from invalid_causes import causes

    lengths = np.array([len(tok.tokenize(t)) for t in texts])
    return {"n": len(texts), **causes(texts), "hit limit": float((lengths >= max_new_tokens).mean()),
            "mean characters": float(np.mean([len(t) for t in texts]))}


def main(argv: list[str] | None = None) -> None:
    from rdkit import RDLogger

    from networks.architectures import Pretrained
    from networks.tokenizers import load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "molgpt-chembl"))
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.n < 1 or args.max_new_tokens < 1:
        parser.error("--n and --max-new-tokens must be at least 1")
    RDLogger.DisableLog("rdApp.*")
    torch.set_num_threads(args.threads)
    tok = load_tokenizer(args.model)
    model = Pretrained(args.model).build(tok).eval()
    with torch.no_grad():
        for masked in (False, True):
            texts = draw(model, tok, args.n, masked, args.seed, args.max_new_tokens)
            row = summarise(texts, tok, args.max_new_tokens)
            print(("<eos> masked while open" if masked else "plain") + ": "
                  + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
