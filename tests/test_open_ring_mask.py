"""The open-ring diagnostic's mask (benchmarks/open_ring_mask.py): it must forbid <eos> exactly
while a ring label or a branch is open, and ``)`` at depth 0, or its verdict on the model is wrong."""
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import open_ring_mask  # noqa: E402
from networks.tokenizers import load_tokenizer  # noqa: E402


def feed(state, tok, smiles_per_row):
    """Feed each row's tokens, rows of unequal length padded (and marked not live)."""
    rows = [tok.tokenize(s) for s in smiles_per_row]
    width = max(map(len, rows))
    for k in range(width):
        ids = torch.tensor([tok.convert_tokens_to_ids(r[k]) if k < len(r) else tok.pad_token_id for r in rows])
        state.update(ids, torch.tensor([k < len(r) for r in rows]))


def test_eos_is_forbidden_exactly_while_a_ring_or_branch_is_open():
    tok = load_tokenizer(str(ROOT / "checkpoints" / "molgpt-chembl"))
    vocab = tok.get_vocab()
    smiles = ["c1ccccc1", "c1ccccc", "CC(C", "C%10CC", "C%10CC%10", "CC(C)C", "C1CC2CC1"]
    state = open_ring_mask.OpenState(vocab, tok.eos_token_id, len(smiles))
    feed(state, tok, smiles)
    raw = torch.zeros(len(smiles), max(vocab.values()) + 1)
    logits = state.mask(raw)
    eos_allowed = torch.isfinite(logits[:, tok.eos_token_id]).tolist()
    assert eos_allowed == [True, False, False, False, True, True, False]
    close_allowed = torch.isfinite(logits[:, vocab[")"]]).tolist()
    assert close_allowed == [False, False, True, False, False, False, False]
    # every other token stays allowed, and the mask leaves its input alone
    assert torch.isfinite(logits[:, vocab["C"]]).all() and (raw == 0).all()
    assert state.rings[6].nonzero().flatten().tolist() == [state.label[vocab["2"]].item()]


def test_summary_counts_each_cause_once():
    tok = load_tokenizer(str(ROOT / "checkpoints" / "molgpt-chembl"))
    row = open_ring_mask.summarise(["CCO", "c1ccccc", "CCO"], tok, max_new_tokens=100)
    assert row["validity"] == 2 / 3 and row["unclosed ring"] == 1 / 3 and row["hit limit"] == 0.0
