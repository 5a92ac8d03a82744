import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from networks.architectures import DNAGPT, ESM, GPT, CheckpointError, MolGPT, Pretrained
from networks.tokenizers import load_tokenizer


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_molgpt_matches_the_era_paper_size():
    model = MolGPT().build(load_tokenizer("smiles"))
    cfg = model.config
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_inner) == (2, 512, 8, 512)
    assert 3.0e6 < n_params(model) < 3.6e6


def test_dnagpt_shape():
    model = DNAGPT().build(load_tokenizer("dna-k4"))
    assert (model.config.n_layer, model.config.n_embd) == (6, 256)
    assert model.config.vocab_size == len(load_tokenizer("dna-k4"))


def test_saved_model_loads_in_plain_transformers(tmp_path):
    tok = load_tokenizer("smiles")
    model = GPT(n_layer=1, n_embd=32, n_head=2, n_inner=64, n_positions=64).build(tok).eval()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.tensor([tok("CCO")["input_ids"]])
    assert torch.allclose(model(ids).logits, again(ids).logits)
    assert AutoTokenizer.from_pretrained(tmp_path).get_vocab() == tok.get_vocab()
    assert torch.equal(Pretrained(str(tmp_path)).build(tok).transformer.wte.weight, model.transformer.wte.weight)


def test_pretrained_errors(tmp_path):
    smiles, dna = load_tokenizer("smiles"), load_tokenizer("dna")
    model = GPT(n_layer=1, n_embd=32, n_head=2, n_inner=64).build(smiles)
    model.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="missing \\['tokenizer.json'\\]"):
        Pretrained(str(tmp_path)).build(smiles)
    smiles.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="were not trained together"):
        Pretrained(str(tmp_path)).build(dna)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        Pretrained(str(tmp_path)).build(smiles)
    with pytest.raises(FileNotFoundError, match="shipped checkpoints"):
        Pretrained("no-such-checkpoint").build(smiles)


def test_small_esm_builds_and_roundtrips(tmp_path):
    tok = load_tokenizer("protein")
    model = ESM().build(tok)
    ids = torch.tensor([tok("MKTAYIAK")["input_ids"]])
    assert model(ids).logits.shape == (1, ids.size(1), len(tok))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert isinstance(Pretrained(str(tmp_path), masked_lm=True).build(tok), type(model))
    assert AutoModelForMaskedLM.from_pretrained(tmp_path).config.vocab_size == 33


def test_gpt_rejects_bad_heads():
    with pytest.raises(ValueError, match="not divisible"):
        GPT(n_embd=30, n_head=4)


def test_pretrained_trains_with_the_dropout_asked_for(tmp_path):
    """from_pretrained returns eval mode and Lightning keeps a submodule's mode, so a loaded model
    used to train with dropout silently off; it now comes back in train mode, and ``dropout``
    overrides the saved probabilities."""
    tok = load_tokenizer("smiles")
    GPT(n_layer=1, n_embd=32, n_head=2, n_inner=64, dropout=0.3).build(tok).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    kept = Pretrained(str(tmp_path)).build(tok)
    assert kept.training
    assert {m.p for m in kept.modules() if isinstance(m, torch.nn.Dropout)} == {0.3}
    ids = torch.tensor([tok("CCOC(=O)c1ccccc1")["input_ids"]])
    assert not torch.equal(kept(ids).logits, kept(ids).logits)  # dropout is active
    off = Pretrained(str(tmp_path), dropout=0.0).build(tok)
    assert {m.p for m in off.modules() if isinstance(m, torch.nn.Dropout)} == {0.0}
    assert torch.equal(off(ids).logits, off(ids).logits)
    # the config says so too, so that an export of it states how it was trained
    assert (off.config.resid_pdrop, off.config.embd_pdrop, off.config.attn_pdrop) == (0.0, 0.0, 0.0)
    assert kept.config.resid_pdrop == 0.3
    assert Pretrained.from_config(Pretrained(str(tmp_path), dropout=0.0).to_config()).dropout == 0.0
    with pytest.raises(ValueError, match="dropout"):
        Pretrained(str(tmp_path), dropout=1.5)


def test_shipped_checkpoints_resolve_from_any_working_directory(tmp_path, monkeypatch):
    """Shipped configs say ``checkpoints/molgpt-moses``; run from elsewhere, that still finds it."""
    from networks.architectures import REPO_CHECKPOINTS, resolve_checkpoint

    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("checkpoints/molgpt-moses") == REPO_CHECKPOINTS / "molgpt-moses"
    assert resolve_checkpoint("molgpt-moses") == REPO_CHECKPOINTS / "molgpt-moses"
    assert len(load_tokenizer("checkpoints/molgpt-moses")) == len(load_tokenizer("smiles"))
    with pytest.raises(FileNotFoundError, match="neither a named tokenizer"):
        load_tokenizer("checkpoints/no-such-model")


def test_pretrained_lengthens_positions_without_changing_short_outputs(tmp_path):
    """Continued pretraining on longer molecules (MOSES → ChEMBL) needs a longer position table;
    the trained rows are kept, so a sequence that fitted before scores exactly as before."""
    tok = load_tokenizer("smiles")
    GPT(n_layer=1, n_embd=32, n_head=2, n_inner=64, n_positions=16, dropout=0.0).build(tok).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    short = Pretrained(str(tmp_path)).build(tok).eval()
    longer = Pretrained(str(tmp_path), n_positions=40).build(tok).eval()
    assert longer.config.n_positions == 40 and longer.transformer.wpe.num_embeddings == 40
    assert torch.equal(longer.transformer.wpe.weight[20], short.transformer.wpe.weight[15])
    ids = torch.tensor([tok("CCOC(=O)c1cc1")["input_ids"]])
    assert ids.shape[1] <= 16
    torch.testing.assert_close(longer(ids).logits, short(ids).logits)
    assert longer(torch.ones(1, 30, dtype=torch.long)).logits.shape[1] == 30  # past the old table
    longer.save_pretrained(tmp_path / "long")
    tok.save_pretrained(tmp_path / "long")
    assert Pretrained(str(tmp_path / "long")).build(tok).config.n_positions == 40
    with pytest.raises(ValueError, match="shorter"):
        Pretrained(str(tmp_path), n_positions=8).build(tok)
    with pytest.raises(ValueError, match="masked_lm"):
        Pretrained(str(tmp_path), masked_lm=True, n_positions=40)
