"""End-to-end CPU runs of the pretraining module: the loss falls, resumption is exact, export loads."""

import csv
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from transformers import AutoModelForCausalLM, AutoTokenizer

from datamodules import SmilesFileDataModule
from interrupt import Interrupt
from lightning_modules import CausalLMPretraining
from main import cli_main
from networks.architectures import GPT
from oracles.canonical import canonical_smiles

ROOT = Path(__file__).resolve().parents[1]


def test_thirty_step_cli_fit_lowers_the_loss_and_exports(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["main.py"])
    monkeypatch.chdir(tmp_path)
    cli_main([
        "fit", "--config", str(ROOT / "configs/pretrain/molgpt_tiny.yaml"),
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(tmp_path), "--trainer.logger.name", "log",
        "--trainer.callbacks+=callbacks.ExportPretrained", f"--trainer.callbacks.dirpath={tmp_path / 'hf'}",
        "--trainer.enable_progress_bar=false",
    ])
    rows = list(csv.DictReader(open(tmp_path / "log" / "version_0" / "metrics.csv")))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) >= 5
    assert losses[-1] < losses[0] - 1.0, losses  # ln(111) ≈ 4.7 at the start
    assert any(r.get("val/ppl") for r in rows)
    validity = [float(r["samples/validity"]) for r in rows if r.get("samples/validity")]
    assert validity and all(0.0 <= v <= 1.0 for v in validity)  # the SampleQuality callback ran

    # the export is a plain Hugging Face directory whose samples decode to SMILES
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    torch.manual_seed(0)
    out = model.generate(torch.full((8, 1), tok.bos_token_id), do_sample=True, max_new_tokens=40,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    texts = tok.batch_decode(out, skip_special_tokens=True)
    assert len(texts) == 8 and all(isinstance(t, str) for t in texts)


class RecordBatches(L.Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append((trainer.current_epoch, batch["record_index"].tolist()))


def _run(tmp_path, smiles, max_steps, ckpt_path=None, every=None, interrupt=None):
    L.seed_everything(0)
    data = SmilesFileDataModule(train=str(smiles), batch_size=16, tokenizer="smiles", seed=3,
                                cache_dir=str(tmp_path / "cache"))
    model = CausalLMPretraining(GPT(1, 32, 2, 64, 128, dropout=0.0), "smiles", lr=1e-3, warmup_steps=2)
    recorder = RecordBatches()
    callbacks = [recorder] + ([Interrupt(interrupt)] if interrupt else [])
    if every:
        callbacks.append(ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=every, save_top_k=-1))
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=callbacks, limit_val_batches=0,
                        enable_checkpointing=bool(every), deterministic=True)
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return recorder.seen, model


@pytest.mark.parametrize("stop", [3, 7, 9])  # mid first epoch, exactly at its end, mid second
def test_resume_reproduces_data_order_and_parameters(tmp_path, smiles_file, stop):
    smiles = smiles_file(100)  # 7 batches of <= 16 per epoch
    full, full_model = _run(tmp_path / "a", smiles, 12)
    first, _ = _run(tmp_path / "b", smiles, 12, every=stop, interrupt=stop)
    ckpt = next((tmp_path / "b" / "ckpt").glob(f"*step={stop}.ckpt"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rest, resumed_model = _run(tmp_path / "c", smiles, 12, ckpt_path=str(ckpt))
    assert first + rest == full
    # the DataModule restores the position, so Lightning's "dataloader is not resumable" would mislead
    assert not [w for w in caught if "not resumable" in str(w.message)]
    for (name, a), b in zip(full_model.named_parameters(), resumed_model.parameters()):
        assert torch.equal(a, b), name


def test_sampling_gives_strings(tmp_path):
    model = CausalLMPretraining(GPT(1, 32, 2, 64, 128), "smiles")
    samples = model.sample(10, max_new_tokens=20, top_k=5)
    assert len(samples) == 10
    assert all(isinstance(s, str) for s in samples)
    assert sum(canonical_smiles(s) is not None for s in samples) <= 10


def test_dna_tiny_config_trains_and_predicts(tmp_path, monkeypatch):
    """The DNA path end to end on the shipped DHS data: fit a few steps, then `predict`."""
    monkeypatch.setattr("sys.argv", ["main.py"])
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(ROOT / "configs/pretrain/dnagpt_tiny.yaml"), "--trainer.max_steps=4",
            "--trainer.val_check_interval=2", "--data.init_args.val_limit=64", "--trainer.enable_progress_bar=false"]
    cli = cli_main(["fit", *args])
    assert cli.trainer.global_step == 4
    cli = cli_main(["predict", *args, "--trainer.limit_predict_batches=1"])
    (out,) = cli.trainer.predict_loop.predictions
    assert out["logprob"].shape == (32,) and (out["logprob"] < 0).all()
