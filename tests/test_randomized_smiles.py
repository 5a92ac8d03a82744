"""Randomized SMILES (networks/randomized_smiles.py) and the datamodules' ``randomized`` option."""

import sys
from pathlib import Path

import pytest
from rdkit import Chem

from datamodules import SmilesFileDataModule
from datamodules.streaming import RecordFile, TokenizedCorpus
from networks.randomized_smiles import randomized_smiles
from networks.tokenizers import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts under test, as tests/test_kinase.py imports them


def _canonical(smiles):
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


def _texts(tok, corpus):
    return [tok.decode(corpus.token_ids(i), skip_special_tokens=True).replace(" ", "") for i in range(len(corpus))]


def test_randomized_smiles_are_the_same_molecule_written_other_ways():
    smiles = "CC(=O)Nc1ccc(O)cc1-c1ccc2ccccc2c1"
    forms = randomized_smiles(smiles, 20, seed=3)
    assert len(forms) == 20
    assert {_canonical(f) for f in forms} == {_canonical(smiles)}
    assert len(set(forms)) > 10  # genuinely different strings, not 20 copies
    assert randomized_smiles(smiles, 20, seed=3) == forms  # seeded
    assert randomized_smiles(smiles, 20, seed=4) != forms


def test_unparsable_smiles_give_no_forms_and_n_must_be_positive():
    assert randomized_smiles("C1CC", 3) == []
    assert randomized_smiles("", 3) == []
    with pytest.raises(ValueError, match="at least 1"):
        randomized_smiles("CCO", 0)


def test_record_file_randomized_expands_records_and_keys_the_cache(tmp_path):
    path = tmp_path / "m.smi"
    path.write_text("c1ccccc1-c1ccccc1O\nC1CC\nCC(N)C(=O)O\n")
    tok = load_tokenizer("smiles")
    plain = TokenizedCorpus.build(RecordFile(str(path)), tok, cache_dir=tmp_path / "c")
    five = TokenizedCorpus.build(RecordFile(str(path), randomized=5), tok, cache_dir=tmp_path / "c")
    other_seed = TokenizedCorpus.build(RecordFile(str(path), randomized=5, randomized_seed=1), tok,
                                       cache_dir=tmp_path / "c")
    assert len({plain.directory, five.directory, other_seed.directory}) == 3
    # 2 parsable molecules × 5 forms; the unparsable record counts once as invalid
    assert len(five) == 10 and five.meta["n_invalid"] == 1
    texts = _texts(tok, five)
    assert [_canonical(t) for t in texts] == [_canonical("c1ccccc1-c1ccccc1O")] * 5 + [_canonical("CC(N)C(=O)O")] * 5
    assert _texts(tok, other_seed) != texts
    with pytest.raises(ValueError, match="randomized must be >= 0"):
        RecordFile(str(path), randomized=-1)


def test_datamodule_randomizes_the_training_split_only(tmp_path):
    train, val = tmp_path / "train.smi", tmp_path / "val.smi"
    train.write_text("Oc1ccc(cc1)C(=O)NC1CCCCC1\n" * 4)
    val.write_text("Oc1ccc(cc1)C(=O)NC1CCCCC1\n" * 4)
    data = SmilesFileDataModule(train=str(train), val=str(val), batch_size=4, cache_dir=str(tmp_path / "c"),
                                randomized=3, seed=2)
    data.setup("fit")
    tok = data.tokenizer
    assert len(data.corpora["train"]) == 12 and len(data.corpora["val"]) == 4
    train_texts = _texts(tok, data.corpora["train"])
    assert len(set(train_texts)) > 1 and {_canonical(t) for t in train_texts} == {_canonical(train_texts[0])}
    assert set(_texts(tok, data.corpora["val"])) == {"Oc1ccc(cc1)C(=O)NC1CCCCC1"}
    # the datamodule's seed picks the forms
    again = SmilesFileDataModule(train=str(train), val=str(val), cache_dir=str(tmp_path / "c"), randomized=3, seed=5)
    again.setup("fit")
    assert _texts(tok, again.corpora["train"]) != train_texts
    with pytest.raises(ValueError, match="randomized must be >= 0"):
        SmilesFileDataModule(train=str(train), randomized=-2)


def test_randomizing_in_worker_processes_gives_the_records_of_one_process(tmp_path, monkeypatch):
    from datamodules import streaming

    path = tmp_path / "m.smi"
    path.write_text("".join(f"{s}\n" for s in ["CCO", "c1ccccc1O", "C1CC", "CC(N)C(=O)O", "OCC1CCNCC1"] * 3))
    one = list(RecordFile(str(path), randomized=3, randomized_seed=4).records())
    monkeypatch.setattr(streaming, "_CHUNK", 4)  # 15 records → 4 chunks, spread over processes
    monkeypatch.setattr(streaming.os, "cpu_count", lambda: 2)
    many = list(RecordFile(str(path), randomized=3, randomized_seed=4).records())
    assert many == one and len(one) == 12 * 3 + 3 and one.count("") == 3


def test_randomized_study_csv_adds_up_and_plots(tmp_path):
    import pandas as pd
    import plot_prior_phase

    frame = pd.read_csv(ROOT / "docs/results/chembl_prior_randomized.csv")
    final = frame[frame["n_samples"].eq(10000) & frame["step"].eq(2800)]
    causes = ["validity", "unclosed_ring", "syntax", "kekulize", "valence", "other"]
    assert len(final) == 2 and ((final[causes].sum(axis=1) - 1).abs() < 0.002).all()
    out = plot_prior_phase.main(["--csv", str(ROOT / "docs/results/chembl_prior_randomized.csv"),
                                 "--out", str(tmp_path / "p.png"), "--right", "fcd"])
    assert out.stat().st_size > 10_000
