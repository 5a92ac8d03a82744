"""Bad configs, oracle snippets, checkpoint paths and checkpoints: one table, each row an input and
the error it must give — the file or field named and the way out, raised before anything is
sampled, trained or imported; and on the command line a one-line ``error: …`` without a traceback."""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml

from lightning_modules.checkpoint_checks import check_compatible
from lightning_modules.checkpoint_io import (CheckpointNotFoundError, CorruptCheckpointError, SafeCheckpointIO,
                                             UnsafeCheckpointError)
from main import cli_main
from networks.architectures import GPT, Architecture
from networks.configurable import ConfigError, UntrustedClassPathError
from oracles.config import oracle_from_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs/pretrain/molgpt_tiny.yaml"
EVIL = "import pathlib\npathlib.Path({flag!r}).write_text('imported')\n\nclass Model:\n    pass\n"


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["main.py"])


def _yaml(tmp_path, name, data) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _tiny(tmp_path, edit=None) -> Path:
    config = yaml.safe_load(TINY.read_text())
    config["trainer"]["callbacks"] = []
    smiles = _yaml(tmp_path, "mols.smi", "CCO\nc1ccccc1\nCC(=O)O\nCCN\n" * 20)
    config["data"]["init_args"].update(train=str(smiles), val_limit=8)
    if edit:
        edit(config)
    return _yaml(tmp_path, "run.yaml", config)


def _architecture(**init_args):
    def edit(config):
        config["model"]["init_args"]["architecture"]["init_args"].update(init_args)
    return edit


def _fit(*args):
    return lambda: cli_main(["fit", *map(str, args)])


def _alignment_without_oracle_class(tmp_path, via_file: bool):
    gpt = {"class_path": "networks.architectures.GPT",
           "init_args": {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_inner": 64, "n_positions": 64}}
    config = {"trainer": {"accelerator": "cpu", "max_steps": 1, "logger": False, "enable_checkpointing": False},
              "model": {"class_path": "lightning_modules.OfflineAlignment", "init_args": {
                  "policy": gpt, "tokenizer": "smiles", "num_samples": 8, "max_pairs": 10, "pairs_per_batch": 4,
                  "objective": {"class_path": "lightning_modules.pair_losses.ERA", "init_args": {"beta": 5.0}},
                  "dataset_path": "runs/samples.parquet", "max_new_tokens": 8,
                  "oracle": {"class_path": "oracles.rdkit_properties.QED"}}}}
    snippet = {"init_args": {"penalty": 3.0}}
    if via_file:
        del config["model"]["init_args"]["oracle"]
        return _fit("--config", _yaml(tmp_path, "era.yaml", config),
                    "--model.init_args.oracle", _yaml(tmp_path, "oracle.yaml", snippet))
    config["model"]["init_args"]["oracle"] = snippet
    return _fit("--config", _yaml(tmp_path, "era.yaml", config))


def _pickled_code_checkpoint(tmp_path):
    class RunsCode:  # unpickling it calls open(flag, "w"): a stand-in for os.system
        def __reduce__(self):
            return open, (str(tmp_path / "code_ran"), "w")

    torch.save({"state_dict": {}, "payload": RunsCode()}, tmp_path / "crafted.ckpt")
    return _fit("--config", _tiny(tmp_path), "--ckpt_path", tmp_path / "crafted.ckpt")


def _evil_module(tmp_path, monkeypatch) -> str:
    """A module that leaves a flag file when imported; returns the flag's path."""
    (tmp_path / "evil_module.py").write_text(EVIL.format(flag=str(tmp_path / "imported")))
    monkeypatch.syspath_prepend(str(tmp_path))
    return str(tmp_path / "imported")


def _checkpoint_naming_a_foreign_class(tmp_path):
    """``load_from_checkpoint`` rebuilds the architecture the checkpoint's hyper-parameters name."""
    from lightning_modules import CausalLMPretraining

    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6.0", "hyper_parameters": {
        "architecture": {"class_path": "evil_module.Model", "init_args": {}}, "tokenizer": "smiles"}},
        tmp_path / "foreign.ckpt")
    return lambda: CausalLMPretraining.load_from_checkpoint(tmp_path / "foreign.ckpt", weights_only=True)


def _mismatched_checkpoint_naming_a_foreign_class(tmp_path):
    from lightning_modules import CausalLMPretraining

    module = CausalLMPretraining(GPT(1, 32, 2, 64, 64), "smiles")
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "evil_module.Model"}}, tmp_path / "x.ckpt")
    return lambda: SafeCheckpointIO(module=module).load_checkpoint(tmp_path / "x.ckpt")


@dataclass
class Row:
    id: str
    make: Callable  # tmp_path → a call that must raise
    error: type
    text: str  # a regular expression the message must match


ROWS = [
    # model fields
    Row("float for an int field", lambda t: _fit("--config", _tiny(t, _architecture(n_layer=2.5))),
        ConfigError, r"architecture config: .*'networks\.architectures\.GPT'.*\"n_layer\": Expected a <class 'int'>\. "
                     r"Got value: 2\.5 — correct the value in the config"),
    Row("misspelled model field", lambda t: _fit("--config", _tiny(t, _architecture(n_layr=2))),
        ConfigError, r"architecture config: .*Option 'n_layr' is not accepted"),
    Row("architecture without class_path", lambda t: lambda: Architecture.from_config({"init_args": {"n_layer": 2}}),
        ConfigError, r"has no class_path: name the class, e\.g\. \{class_path: networks\.architectures\.GPT"),
    # oracle snippets
    Row("oracle YAML without class_path", lambda t: lambda: oracle_from_config(
        _yaml(t, "o.yaml", {"init_args": {"penalty": 3.0}})),
        ConfigError, r"oracle config .*o\.yaml has no class_path: name the oracle class, e\.g\. class_path: oracles\."),
    Row("oracle YAML with a misspelled field", lambda t: lambda: oracle_from_config(
        _yaml(t, "o.yaml", {"class_path": "oracles.rdkit_properties.QED", "init_args": {"penallty": 3.0}})),
        ConfigError, r"oracle config .*o\.yaml: .*Option 'penallty' is not accepted — correct it in the file"),
    Row("oracle YAML missing a required field", lambda t: lambda: oracle_from_config(_yaml(t, "o.yaml", {
        "class_path": "oracles.rdkit_properties.LogP",
        "init_args": {"transform": {"class_path": "oracles.transforms.Harmonic", "init_args": {"sigma": 1.0}}}})),
        ConfigError, r"oracle config .*o\.yaml: .*'oracles\.transforms\.Harmonic': the following arguments are "
                     r"required: mu"),
    Row("oracle YAML that is not YAML", lambda t: lambda: oracle_from_config(_yaml(t, "o.yaml", "class_path: [x\n")),
        ConfigError, r"oracle config .*o\.yaml is not valid YAML"),
    Row("run config whose oracle has no class_path", lambda t: _alignment_without_oracle_class(t, via_file=False),
        ConfigError, r"model\.init_args\.oracle in .*era\.yaml: the oracle has no class_path, so the base class "
                     r"oracles\.base\.Oracle, which cannot score, would be built"),
    Row("--model.init_args.oracle naming a YAML without class_path",
        lambda t: _alignment_without_oracle_class(t, via_file=True),
        ConfigError, r"model\.init_args\.oracle in .*oracle\.yaml: the oracle has no class_path"),
    # --ckpt_path
    Row("a directory as --ckpt_path", lambda t: _fit("--config", _tiny(t), "--ckpt_path", t),
        CheckpointNotFoundError, r"checkpoint .* is a directory, not a checkpoint file: name a \.ckpt file"),
    Row("a YAML config as --ckpt_path", lambda t: _fit("--config", _tiny(t), "--ckpt_path", _tiny(t)),
        CorruptCheckpointError, r"run\.yaml is a text file \(it begins 'data:'\), not a checkpoint: a YAML "
                                r"config goes to --config; --ckpt_path takes a \.ckpt file"),
    Row("a missing --ckpt_path", lambda t: _fit("--config", _tiny(t), "--ckpt_path", t / "nope.ckpt"),
        CheckpointNotFoundError, r"checkpoint .*nope\.ckpt does not exist"),
    Row("an empty --ckpt_path", lambda t: _fit("--config", _tiny(t), "--ckpt_path", _yaml(t, "e.ckpt", "")),
        CorruptCheckpointError, r"e\.ckpt is empty \(0 bytes\)"),
    # checkpoints that would run code
    Row("--weights_only false", lambda t: _fit("--config", _tiny(t), "--weights_only", "false"),
        UnsafeCheckpointError, r"--weights_only false loads pickled Python objects.*add --trust_checkpoint_code true"),
    Row("a checkpoint with a pickled callable", _pickled_code_checkpoint,
        UnsafeCheckpointError, r"crafted\.ckpt holds pickled Python objects \(Unsupported global: GLOBAL "
                               r"\S*open\).*not loaded"),
    Row("a checkpoint naming a foreign class", _checkpoint_naming_a_foreign_class,
        UntrustedClassPathError, r"architecture config names class 'evil_module\.Model', which is not imported"),
    Row("a foreign class named by a checkpoint that does not fit", _mismatched_checkpoint_naming_a_foreign_class,
        UntrustedClassPathError, r"checkpoint .*x\.ckpt names class 'evil_module\.Model', which is not imported"),
    Row("os.system as an architecture", lambda t: lambda: Architecture.from_config({"class_path": "os.system"}),
        UntrustedClassPathError, r"names class 'os\.system', which is not imported: only rewardfit's own packages"),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_bad_input_is_a_clear_error(row, tmp_path, monkeypatch):
    flag = _evil_module(tmp_path, monkeypatch)
    call = row.make(tmp_path)
    with pytest.raises(row.error, match=row.text) as error:
        call()
    message = str(error.value)
    assert "weights_only=False" not in message and "weights_only set to False" not in message
    assert not Path(flag).exists() and "evil_module" not in sys.modules  # nothing foreign was imported
    assert not (tmp_path / "code_ran").exists()  # nothing in a checkpoint ran
    assert not (tmp_path / "runs").exists()  # raised before the alignment sampled anything


def test_the_command_line_prints_one_line_not_a_traceback(tmp_path):
    config = _tiny(tmp_path, _architecture(n_layer=2.5))
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "fit", "--config", str(config)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: architecture config: ")
    assert "n_layer" in result.stderr


def test_a_class_named_in_the_run_config_may_be_named_by_its_checkpoints(tmp_path):
    """The allow-list is the project's packages plus the run's own config, not less."""
    from networks.configurable import allow_class_paths, check_class_path

    with pytest.raises(UntrustedClassPathError):
        check_class_path("my_lab.models.Special")
    allow_class_paths({"my_lab.models.Special"})
    assert check_class_path("my_lab.models.Special") == "my_lab.models.Special"
    assert check_class_path("networks.architectures.GPT") and check_class_path("lightning.pytorch.callbacks.Callback")


def test_a_checkpoint_from_this_project_still_loads_safely(tmp_path):
    module = torch.nn.Linear(2, 2)
    SafeCheckpointIO().save_checkpoint({"state_dict": module.state_dict(), "hyper_parameters": {"lr": 1.0}},
                                       tmp_path / "ok.ckpt")
    loaded = SafeCheckpointIO().load_checkpoint(tmp_path / "ok.ckpt")
    assert torch.equal(loaded["state_dict"]["weight"], module.weight)
    check_compatible(module, {"state_dict": module.state_dict(), "hyper_parameters": {"_class_path": "evil.X"}})
