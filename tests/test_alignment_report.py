"""callbacks.AlignmentReport: where "before" comes from, what it writes, and that main.py adds it
to alignment runs (once) and refuses removed module arguments with a clear error."""

import json
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import yaml

from callbacks.alignment_report import AlignmentReport
from lightning_modules import CausalLMPretraining, OfflineAlignment, OnlineAlignment
from lightning_modules.pair_losses import ERA
from networks.architectures import GPT
from toy_oracles import Length

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(policy=GPT(1, 32, 2, 64, 64, dropout=0.0), tokenizer="smiles", objective=ERA(beta=5.0), top_k=None,
            max_new_tokens=12, val_samples=16, lr=1e-3)


def _offline(tmp_path, **kwargs):
    L.seed_everything(0)
    return OfflineAlignment(Length(), num_samples=24, max_pairs=50, pairs_per_batch=8,
                            dataset_path=str(tmp_path / "samples.parquet"), **{**TINY, **kwargs})


def _trainer(callbacks, steps=2, validate=True):
    return L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     val_check_interval=steps, limit_val_batches=1 if validate else 0, callbacks=callbacks)


def test_before_is_the_stored_set_offline_and_fresh_samples_online(tmp_path):
    offline = _offline(tmp_path)
    offline.prepare_data()
    offline.setup("fit")
    frame = pd.read_parquet(tmp_path / "samples.parquet")
    before = offline.reference_evaluation()
    assert before.stats == {} and before.energies.tolist() == frame["energy"].tolist()
    assert before.values["length"].tolist() == frame["value_length"].tolist()
    online = OnlineAlignment(Length(), num_samples=8, resample_every=1, **TINY)
    before = online.reference_evaluation()
    assert len(before.energies) == 16 and before.stats["samples/kl_to_reference"] == pytest.approx(0, abs=1e-4)


def test_the_report_writes_to_its_dirpath_and_only_after_a_validation(tmp_path, capsys):
    module = _offline(tmp_path, plot_dir=str(tmp_path / "plots"))
    report = AlignmentReport(dirpath=str(tmp_path / "report"))
    _trainer([report]).fit(module)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    frame = pd.read_parquet(tmp_path / "samples.parquet")
    assert summary["step"] == 2 and summary["reference"]["energy/mean"] == pytest.approx(frame["energy"].mean())
    assert summary["policy"]["energy/mean"] == module.history[-1]["energy/mean"]
    assert report.last_plot == tmp_path / "report" / "histogram_length.png" and report.last_plot.is_file()
    assert not (tmp_path / "plots").exists()
    out = capsys.readouterr().out
    assert "property/length/mean" in out and f"summary: {tmp_path / 'report' / 'summary.json'}" in out

    quiet = _offline(tmp_path, plot_dir=str(tmp_path / "quiet"))
    _trainer([AlignmentReport()], validate=False).fit(quiet)  # no validation: nothing to compare
    assert not (tmp_path / "quiet").exists() and "summary:" not in capsys.readouterr().out


def test_the_report_refuses_other_modules():
    module = CausalLMPretraining(GPT(1, 32, 2, 64, 64), tokenizer="smiles")
    with pytest.raises(TypeError, match="AlignmentReport reports on alignment modules, not CausalLMPretraining"):
        AlignmentReport().on_fit_start(L.Trainer(logger=False), module)


def _config(tmp_path, **init_args):
    """A tiny online alignment config (a stand-in checkpoint) as a file."""
    from networks.tokenizers import load_tokenizer

    tok = load_tokenizer("smiles")
    GPT(1, 32, 2, 64, 64).build(tok).save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    config = {"trainer": {"accelerator": "cpu", "max_steps": 1, "logger": False, "enable_checkpointing": False,
                          "default_root_dir": str(tmp_path / "run")},
              "model": {"class_path": "lightning_modules.OnlineAlignment", "init_args": {
                  "tokenizer": str(tmp_path / "ckpt"), "num_samples": 8, "max_new_tokens": 8,
                  "policy": {"class_path": "networks.architectures.Pretrained",
                             "init_args": {"path": str(tmp_path / "ckpt")}},
                  "oracle": {"class_path": "oracles.rdkit_properties.QED"}, **init_args}}}
    path = tmp_path / "online.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_main_adds_one_report_to_alignment_runs(tmp_path, monkeypatch):
    from main import cli_main

    monkeypatch.setattr("sys.argv", ["main.py"])
    config = _config(tmp_path)
    reports = [c for c in cli_main(["--config", str(config)], run=False).trainer.callbacks
               if isinstance(c, AlignmentReport)]
    assert len(reports) == 1 and reports[0].dirpath is None
    named = ["--config", str(config), "--trainer.callbacks+=callbacks.AlignmentReport",
             f"--trainer.callbacks.dirpath={tmp_path / 'mine'}"]
    reports = [c for c in cli_main(named, run=False).trainer.callbacks if isinstance(c, AlignmentReport)]
    assert len(reports) == 1 and reports[0].dirpath == str(tmp_path / "mine")
    pretraining = cli_main(["--config", str(ROOT / "configs/pretrain/molgpt_tiny.yaml")], run=False)
    assert not any(isinstance(c, AlignmentReport) for c in pretraining.trainer.callbacks)


def test_an_offline_only_argument_on_online_alignment_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """``dataset_path`` was accepted (and ignored) by OnlineAlignment before the two became siblings."""
    from main import cli_main

    monkeypatch.setattr("sys.argv", ["main.py"])
    config = _config(tmp_path, dataset_path="runs/x.parquet")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(config), "--print_config"])
    err = capsys.readouterr().err
    assert exit_info.value.code != 0 and "dataset_path" in err and "Traceback" not in err


def test_the_invalid_term_is_named_in_a_config(tmp_path, monkeypatch):
    from lightning_modules.invalid_term import InvalidTerm
    from main import cli_main

    monkeypatch.setattr("sys.argv", ["main.py"])
    term = {"class_path": "lightning_modules.invalid_term.InvalidTerm", "init_args": {"weight": 2.0, "beta": 0.25}}
    model = cli_main(["--config", str(_config(tmp_path, invalid_term=term))], run=False).model
    assert isinstance(model.invalid_term, InvalidTerm) and (model.invalid_term.weight, model.invalid_term.beta) == (2.0, 0.25)
    shorthand = cli_main(["--config", str(_config(tmp_path, invalid_weight=3.0))], run=False).model
    assert (shorthand.invalid_term.weight, shorthand.invalid_term.beta) == (3.0, 0.5)
