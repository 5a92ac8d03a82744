"""The shipped language-model checkpoints load in plain transformers and by name, and sample
valid sequences; their model cards state how they were made."""

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MOLGPT = ROOT / "checkpoints" / "molgpt-moses"
# the shipped molecular GPTs, and what each card must report
MOLECULAR = {
    "molgpt-moses": ("validity", "uniqueness", "novelty", "IntDiv", "FCD", "steps", "wall"),
    "molgpt-chembl": ("validity", "uniqueness", "novelty", "IntDiv", "FCD", "steps", "wall"),
    "molgpt-qm9": ("validity", "uniqueness", "novelty", "IntDiv", "steps", "wall"),
}


@pytest.mark.parametrize("name", sorted(MOLECULAR))
def test_molecular_gpts_load_in_plain_transformers_and_generate_smiles(name):
    from rdkit import Chem, RDLogger
    from transformers import AutoModelForCausalLM, AutoTokenizer

    RDLogger.DisableLog("rdApp.*")
    directory = ROOT / "checkpoints" / name
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    torch.manual_seed(0)
    start = torch.full((64, 1), tokenizer.bos_token_id)
    out = model.generate(start, attention_mask=torch.ones_like(start), do_sample=True, top_k=5, max_new_tokens=100,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    texts = tokenizer.batch_decode(out, skip_special_tokens=True)
    valid = [t for t in texts if t and Chem.MolFromSmiles(t) is not None]
    assert len(valid) / len(texts) > 0.5, texts[:5]


@pytest.mark.parametrize("name", sorted(MOLECULAR))
def test_molecular_gpts_load_by_name_with_a_card(name):
    from networks.architectures import Pretrained
    from networks.tokenizers import load_tokenizer

    directory = ROOT / "checkpoints" / name
    tokenizer = load_tokenizer(str(directory))
    model = Pretrained(name).build(tokenizer)
    assert sum(p.numel() for p in model.parameters()) == 3_279_360  # MolGPT with 128 positions
    assert all(p.dtype == torch.float32 for p in model.parameters())  # bf16 files are upcast
    card = (directory / "README.md").read_text()
    for field in MOLECULAR[name]:
        assert field in card, field
    assert sum(f.stat().st_size for f in directory.iterdir()) < 20 * 2**20


def test_a_missing_file_is_a_clear_error(tmp_path):
    import shutil

    from networks.architectures import CheckpointError, check_checkpoint_dir

    broken = tmp_path / "broken"
    shutil.copytree(MOLGPT, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises((CheckpointError, FileNotFoundError), match="model.safetensors|weights"):
        check_checkpoint_dir(broken)


def test_dnagpt_dhs_loads_in_plain_transformers_and_generates_full_length_dna():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = ROOT / "checkpoints" / "dnagpt-dhs"
    model = AutoModelForCausalLM.from_pretrained(str(directory)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    torch.manual_seed(0)
    start = torch.full((32, 1), tokenizer.bos_token_id)
    out = model.generate(start, attention_mask=torch.ones_like(start), do_sample=True, top_k=0, max_new_tokens=60,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    texts = [t.replace(" ", "") for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
    assert all(set(t) <= set("ACGT") for t in texts)
    assert sum(len(t) == 200 for t in texts) >= 28, [len(t) for t in texts]
    card = (directory / "README.md").read_text()
    for field in ("perplexity", "spectrum", "steps", "wall"):
        assert field in card, field
    assert sum(f.stat().st_size for f in directory.iterdir()) < 20 * 2**20
    # the data's base composition (32 × 200 bp: the standard error of the mean GC is ≈ 0.02); top_k=0
    # because generate would otherwise apply its default top-k of 50, which skews the composition
    from datamodules.sources import dhs_path, read_records

    def gc(sequences):
        bases = "".join(sequences)
        return (bases.count("G") + bases.count("C")) / len(bases)

    sites = list(read_records(dhs_path(), "sequence", {"data_label": "validation"}))
    assert abs(gc(texts) - gc(sites)) < 0.06, (gc(texts), gc(sites))
