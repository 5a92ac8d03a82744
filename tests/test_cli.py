"""Every YAML under configs/ must parse through the CLI, so a stale config fails CI."""

from pathlib import Path

import pytest
import torch

from main import cli_main


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["main.py"])

ROOT = Path(__file__).resolve().parents[1]
SNIPPET_DIRS = {"oracles", "slurm"}  # not CLI configs: loaded in test_oracles.py / test_slurm.py (each shipped one)
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if p.parent.name not in SNIPPET_DIRS)
PRESET_DIRS = {"trainer"}  # partial configs composed with a task config
BASE = ROOT / "configs" / "pretrain" / "molgpt_tiny.yaml"


def _print_config(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", *args, "--print_config"])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_parses(config, capsys):
    args = ["--config", str(BASE), "--config", str(config)] if config.parent.name in PRESET_DIRS \
        else ["--config", str(config)]
    code, out, err = _print_config(args, capsys)
    assert code in (0, None), err
    assert "class_path" in out


def test_tokenizer_is_linked_from_model_to_data():
    cli = cli_main(["--config", str(ROOT / "configs/pretrain/dnagpt_tiny.yaml")], run=False)
    assert cli.model.hparams.tokenizer == cli.datamodule.tokenizer_spec == "dna-k4"
    assert cli.datamodule.tokenizer.get_vocab() == cli.model.tokenizer.get_vocab()


def test_misspelled_key_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.read_text().replace("warmup_steps:", "warmup_stpes:"))
    code, _, err = _print_config(["--config", str(bad)], capsys)
    assert code != 0
    assert "warmup_stpes" in err


def test_missing_config_file_is_a_clear_error(tmp_path, capsys):
    code, _, err = _print_config(["--config", str(tmp_path / "nope.yaml")], capsys)
    assert code != 0 and "nope.yaml" in err


def test_a100_preset_appends_its_callback_to_the_tasks(capsys):
    code, out, err = _print_config(["--config", str(ROOT / "configs/pretrain/molgpt_moses.yaml"),
                                    "--config", str(ROOT / "configs/trainer/a100.yaml")], capsys)
    assert code in (0, None), err
    assert "callbacks.MatmulPrecision" in out and "callbacks.SampleQuality" in out
    assert "precision: bf16-mixed" in out


ALIGNMENT_CONFIGS = [p for p in CONFIGS if "lightning_modules.OfflineAlignment" in p.read_text()
                     or "lightning_modules.OnlineAlignment" in p.read_text()]


@pytest.mark.parametrize("config", ALIGNMENT_CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_alignment_config_builds(config):
    """More than parsing: the module, its reference checkpoint, oracle and objective are built as the
    YAML says (``--print_config`` stops before anything is instantiated)."""
    import yaml

    from lightning_modules import OfflineAlignment

    spec = yaml.safe_load(config.read_text())["model"]
    cli = cli_main(["--config", str(config)], run=False)
    model = cli.model
    assert isinstance(model, OfflineAlignment) and type(model).__name__ == spec["class_path"].rsplit(".", 1)[1]
    objective = spec["init_args"]["objective"]
    assert type(model.objective).__name__ == objective["class_path"].rsplit(".", 1)[1]
    for key, value in objective.get("init_args", {}).items():
        assert getattr(model.objective, key) == pytest.approx(value), key
    assert type(model.oracle).__name__ == spec["init_args"]["oracle"]["class_path"].rsplit(".", 1)[1]
    assert model.hparams.lr == pytest.approx(spec["init_args"]["lr"])
    # the policy starts as the frozen reference
    ref = dict(model.reference.named_parameters())
    assert all(torch.equal(p, ref[name]) for name, p in model.model.named_parameters())
