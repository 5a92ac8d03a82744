import itertools

import pytest
from transformers import AutoTokenizer, EsmTokenizer

from datamodules.sources import moses_path, read_records
from networks.tokenizers import (
    ESM_VOCAB,
    TokenizationError,
    build_dna_tokenizer,
    build_smiles_tokenizer,
    encode_checked,
    load_tokenizer,
    split_smiles,
)


@pytest.fixture(scope="module")
def smiles_tok():
    return load_tokenizer("smiles")


def test_smiles_roundtrip_on_10k_moses(smiles_tok):
    # every 100th of the first 1.2M MOSES training SMILES: 12,000 molecules spread over the file
    sample = list(itertools.islice(read_records(moses_path("train"), "SMILES"), 0, 1_200_000, 100))
    assert len(sample) >= 10_000
    ids = encode_checked(smiles_tok, sample)
    decoded = smiles_tok.batch_decode(ids, skip_special_tokens=True)
    mismatches = [(s, d) for s, d in zip(sample, decoded) if s != d]
    assert not mismatches, mismatches[:5]
    assert all(i[0] == smiles_tok.bos_token_id and i[-1] == smiles_tok.eos_token_id for i in ids)


def test_regex_tokens_are_atoms():
    assert split_smiles("C[C@@H](Br)c1ccc(Cl)cc1%12") == [
        "C", "[C@@H]", "(", "Br", ")", "c", "1", "c", "c", "c", "(", "Cl", ")", "c", "c", "1", "%12"]


def test_unknown_smiles_token_names_token_and_smiles(smiles_tok):
    with pytest.raises(TokenizationError, match=r"\['\[Xe\]'\].*CC\[Xe\]C"):
        encode_checked(smiles_tok, ["CCO", "CC[Xe]C"])
    with pytest.raises(TokenizationError, match="expected a string"):
        encode_checked(smiles_tok, [None])


def test_build_from_corpus_is_deterministic_and_has_no_unk_by_default():
    corpus = ["CCO", "c1ccccc1", "CC(=O)N"]
    a, b = build_smiles_tokenizer(corpus), build_smiles_tokenizer(reversed(corpus))
    assert a.get_vocab() == b.get_vocab()
    assert a.unk_token is None
    with_unk = build_smiles_tokenizer(corpus, add_unk=True, extra_tokens=())
    assert with_unk.unk_token == "<unk>"


def test_saved_tokenizer_loads_with_autotokenizer(tmp_path, smiles_tok):
    smiles_tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("CC(=O)Oc1ccccc1")["input_ids"] == smiles_tok("CC(=O)Oc1ccccc1")["input_ids"]
    assert again.decode(again("C#N")["input_ids"], skip_special_tokens=True) == "C#N"


@pytest.mark.parametrize("k", [1, 4])
def test_dna_roundtrip(k):
    tok = build_dna_tokenizer(k)
    seqs = ["ACGT" * 50, "ACGTA", "G", "TTTTTTTTTCA"]
    ids = encode_checked(tok, seqs)
    assert tok.batch_decode(ids, skip_special_tokens=True) == seqs
    if k == 4:
        assert len(ids[0]) == 50 + 2  # 200 bp -> 50 non-overlapping 4-mers + bos/eos


@pytest.mark.parametrize("bad", ["ACGNT", "acgt", "ACG T"])
def test_dna_non_acgt_is_a_clear_error(bad):
    with pytest.raises(TokenizationError, match="unknown token"):
        encode_checked(load_tokenizer("dna-k4"), [bad])


def test_protein_tokenizer_matches_esm_ids(tmp_path):
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(ESM_VOCAB) + "\n")
    esm = EsmTokenizer(str(vocab_file))
    ours = load_tokenizer("protein")
    seq = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWUZOBX"
    assert ours(seq)["input_ids"] == esm(seq)["input_ids"]
    assert ours.get_vocab() == esm.get_vocab()
    assert ours.decode(ours(seq)["input_ids"], skip_special_tokens=True) == seq
    with pytest.raises(TokenizationError, match="'1'"):
        encode_checked(ours, ["MK1V"])


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a named tokenizer"):
        load_tokenizer("no-such-tokenizer")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
