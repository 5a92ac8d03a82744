"""Fresh ring labels (networks/ring_labels.py) and the datamodules' ``transform`` option."""

import itertools
import re
import sys
from pathlib import Path

import pytest
from rdkit import Chem, RDLogger

from datamodules import SmilesFileDataModule
from datamodules.sources import chembl_path, read_records
from datamodules.streaming import RecordFile, TokenizedCorpus
from networks.ring_labels import RingLabelError, fresh_ring_labels
from networks.tokenizers import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "benchmarks"))  # the scripts under test; appended, so that benchmarks/oracles.py never shadows the oracles package

RDLogger.DisableLog("rdApp.*")
_RING = re.compile(r"\[[^\]]*\]|%\d\d|\d")  # bracket atoms first, so their digits are skipped


def _ring_labels(smiles):
    return [t for t in _RING.findall(smiles) if not t.startswith("[")]


def _canonical(smiles):
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


def test_reused_labels_become_fresh_in_order_of_opening():
    assert fresh_ring_labels("c1ccc2ccccc2c1-c1ccccc1") == "c1ccc2ccccc2c1-c3ccccc3"
    # a label reused while another ring is open, a bond symbol on the closure, charges kept
    assert fresh_ring_labels("C1CC2CC1C=2") == "C1CC2CC1C=2"
    assert fresh_ring_labels("C1CC1C1CC1[NH3+]") == "C1CC1C2CC2[NH3+]"
    assert fresh_ring_labels("CCO") == "CCO"


def test_past_nine_rings_labels_take_the_percent_form():
    smiles = "".join("C1CC1" for _ in range(11))  # eleven rings, all labelled 1
    out = fresh_ring_labels(smiles)
    assert _ring_labels(out) == [lab for n in range(1, 12) for lab in [str(n) if n < 10 else f"%{n}"] * 2]
    assert _canonical(out) == _canonical(smiles)


def test_shipped_chembl_molecules_keep_their_identity_and_each_label_occurs_twice():
    tok = load_tokenizer("smiles")
    molecules = list(itertools.islice(read_records(str(chembl_path("train"))), 400))
    changed = 0
    for smiles in molecules:
        out = fresh_ring_labels(smiles)
        changed += out != smiles
        assert _canonical(out) == _canonical(smiles)
        labels = _ring_labels(out)
        assert all(labels.count(lab) == 2 for lab in labels)
        opened = list(dict.fromkeys(labels))  # in order of first occurrence
        assert opened == [str(n) if n < 10 else f"%{n}" for n in range(1, len(opened) + 1)]
        assert fresh_ring_labels(out) == out  # idempotent
        assert len(tok(out)["input_ids"]) == len(tok(smiles)["input_ids"])  # same token count
    assert changed > 50  # most drug-like molecules reuse a label somewhere


@pytest.mark.parametrize("bad", ["C1CC", "c1ccc2ccccc1", "C1CC1 x", "C" + "1CC1C" * 100])
def test_unrewritable_smiles_raise_a_clear_error(bad):
    with pytest.raises(RingLabelError):
        fresh_ring_labels(bad)


def test_record_file_transform_rewrites_records_and_counts_failures_invalid(tmp_path):
    path = tmp_path / "m.smi"
    path.write_text("c1ccccc1-c1ccccc1\nC1CC\nCCO\n")
    tok = load_tokenizer("smiles")
    plain = TokenizedCorpus.build(RecordFile(str(path)), tok, cache_dir=tmp_path / "c")
    fresh = TokenizedCorpus.build(RecordFile(str(path), transform="fresh_ring_labels"), tok,
                                  cache_dir=tmp_path / "c")
    assert plain.directory != fresh.directory  # the transform is part of the cache key
    assert len(plain) == 3 and len(fresh) == 2 and fresh.meta["n_invalid"] == 1
    texts = [tok.decode(fresh.token_ids(i), skip_special_tokens=True).replace(" ", "") for i in range(2)]
    assert texts == ["c1ccccc1-c2ccccc2", "CCO"]
    with pytest.raises(ValueError, match="unknown transform 'canonicalise'"):
        RecordFile(str(path), transform="canonicalise")


def test_datamodule_transform_applies_to_every_split(tmp_path):
    path = tmp_path / "m.smi"
    path.write_text("C1CC1C1CC1\n" * 20)
    data = SmilesFileDataModule(train=str(path), val=str(path), batch_size=4, cache_dir=str(tmp_path / "c"),
                                transform="fresh_ring_labels")
    data.setup("fit")
    tok = data.tokenizer
    for stage in ("train", "val"):
        ids = data.corpora[stage].token_ids(0)
        assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == "C1CC1C2CC2"
    with pytest.raises(ValueError, match="unknown transform"):
        SmilesFileDataModule(train=str(path), transform="nope")


@pytest.mark.parametrize("smiles, cause", [
    ("CCO", None), ("", "empty"), ("C1CC", "unclosed ring"), ("C1CC1C1", "unclosed ring"),
    ("C(C", "syntax"), ("CC))", "syntax"), ("c1cccc1", "kekulize"), ("C(F)(F)(F)(F)F", "valence"),
    ("[NH3+]C1CC1", None), ("[NH4+]C1CC1", "valence"),
])
def test_smiles_failure_names_why_a_sample_is_invalid(smiles, cause):
    from oracles.canonical import SMILES_FAILURES, smiles_failure

    assert smiles_failure(smiles) == cause
    assert cause is None or cause in SMILES_FAILURES


def test_invalid_causes_counts_fresh_style_and_causes():
    import invalid_causes as module
    from networks.ring_labels import has_fresh_ring_labels as fresh_style

    assert fresh_style("c1ccccc1-c2ccccc2") and fresh_style("CCO")
    assert not fresh_style("c1ccccc1-c1ccccc1") and not fresh_style("C2CC2")
    row = module.causes(["CCO", "C1CC", "c1cccc1", "c1ccccc1-c1ccccc1"])
    assert row["validity"] == 0.5 and row["unclosed ring"] == 0.25 and row["kekulize"] == 0.25
    assert row["fresh_ring_labels"] == 0.5  # CCO and c1cccc1 (fresh-style, though not kekulisable)


def test_fresh_rings_results_csv_is_complete_and_plots(tmp_path):
    import pandas as pd
    import plot_prior_phase

    frame = pd.read_csv(ROOT / "docs/results/chembl_prior_fresh_rings.csv")
    causes = ["validity", "unclosed_ring", "syntax", "kekulize", "valence", "other"]
    total = frame[causes].fillna(0).sum(axis=1)
    assert ((total - 1).abs() < 0.001).all()  # valid + the causes account for every sample
    assert frame["start"].isna().sum() == 2 and frame["step"].max() == 4000
    out = plot_prior_phase.main(["--out", str(tmp_path / "p.png")])
    assert out.stat().st_size > 10_000


def test_open_ring_contexts_follow_each_label_s_parity():
    """After each token: is some ring label open? Reused labels (``c1…c1…c1…c1``) open and close
    again; two labels open at once stay open until both close; padding changes nothing."""
    import torch

    from networks.ring_labels import open_ring_contexts, ring_label_ids

    tok = load_tokenizer("smiles")
    labels = ring_label_ids(tok.get_vocab())
    assert sorted(tok.convert_ids_to_tokens(labels)) == sorted([*"123456789", *(f"%{k}" for k in range(10, 20))])
    smiles = ["C1CC1C1CC1", "C1CC2CC1C2", "C%10CC%10"]
    rows = [tok.convert_tokens_to_ids(tok.tokenize(s)) for s in smiles]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
    got = open_ring_contexts(ids, labels)
    assert got[0, :7].tolist() == [False, True, True, True, False, False, True]  # C 1 C C 1 C 1
    assert got[1].tolist() == [False, True, True, True, True, True, True, True, True, False]  # C1CC2CC1C2: 2 open to the end
    assert got[2, :5].tolist() == [False, True, True, True, False] and not got[2, 5:].any()


def test_open_ring_weight_weights_only_the_training_loss_where_a_ring_is_open():
    """The weighted mean equals the plain one when every weight is 1, and leans towards the
    open-ring positions' loss as their weight grows; validation stays the plain mean; a weight that
    is not positive, or one for a tokenizer without ring labels, is refused."""
    import torch

    from lightning_modules.causal_lm import CausalLMPretraining, next_token_loss
    from networks.architectures import GPT

    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    ids = torch.randint(3, 11, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    plain, n = next_token_loss(logits, ids, mask)
    same, n_same = next_token_loss(logits, ids, mask, torch.ones(2, 6))
    assert torch.allclose(plain, same) and n == n_same == 8
    only = torch.zeros(2, 6)
    only[0, 2] = 1.0  # predicting ids[0, 3] from the prefix up to position 2
    one, _ = next_token_loss(logits, ids, mask, only)
    assert torch.allclose(one, torch.nn.functional.cross_entropy(logits[0, 2:3], ids[0, 3:4]))
    module = CausalLMPretraining(GPT(1, 16, 2, 32, 64), "smiles", open_ring_weight=5.0)
    tok = module.tokenizer
    batch = tok(["C1CCCCC1O", "CCO"], padding=True, return_tensors="pt")
    _, weighted, _ = module._loss(dict(batch), weighted=True)
    _, unweighted, _ = module._loss(dict(batch))
    assert not torch.allclose(weighted, unweighted)
    with pytest.raises(ValueError, match="positive"):
        CausalLMPretraining(GPT(1, 16, 2, 32, 64), "smiles", open_ring_weight=0.0)
    with pytest.raises(ValueError, match="ring-label tokens"):
        CausalLMPretraining(GPT(1, 16, 2, 32, 64), "dna", open_ring_weight=3.0)
