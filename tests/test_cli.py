"""Every YAML under configs/ must parse through the CLI, so a stale config fails CI: each run
config alone, each override on its base, and each old path that moved (configs/moved.yaml)."""

from pathlib import Path

import pytest
import torch
import yaml

from cluster.config_files import expand_moved, moved_configs
from main import cli_main


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["main.py"])

ROOT = Path(__file__).resolve().parents[1]
SNIPPET_DIRS = {"oracles", "slurm"}  # not CLI configs: loaded in test_oracles.py / test_slurm.py (each shipped one)
PRESET_DIRS = {"trainer"}  # partial configs composed with a task config
OVERRIDE_DIRS = {"tasks": "era", "landscapes": "protein"}  # overrides of <family>/base.yaml
OBJECTIVE_OVERRIDES = {"dpo.yaml"}  # an objective swapped on a family's base + override
BASE = ROOT / "configs" / "pretrain" / "molgpt_tiny.yaml"


def _fragment(p: Path) -> bool:
    return (p.parent.name in SNIPPET_DIRS | set(OVERRIDE_DIRS) or p.name == "base.yaml"
            or p.name in OBJECTIVE_OVERRIDES or p == ROOT / "configs" / "moved.yaml")


def _id(args) -> str:
    return "+".join(str(Path(v).relative_to(ROOT / "configs")) for f, v in zip(args, args[1:]) if f == "--config")


def _documented_command(p: Path) -> list[str] | None:
    """An override elsewhere is tested as the command its header gives:
    ``#   python main.py fit --config BASE --config … --config THIS`` (without one: alone). That
    holds for an override that swaps the module class too (an online variant over an offline
    recipe: its other arguments come from the files under it)."""
    import shlex

    if p.parent.name in PRESET_DIRS:
        return None
    text = p.read_text()
    whole = "class_path" in ((yaml.safe_load(text) or {}).get("model") or {})
    for line in text.splitlines():
        if line.startswith("#") and "python main.py fit" in line and p.relative_to(ROOT).as_posix() in line:
            words = shlex.split(line.split("python main.py fit", 1)[1])
            if whole and words.count("--config") < 2:  # a whole config: parsed alone
                return None
            return [str(ROOT / w) if k and words[k - 1] == "--config" else w for k, w in enumerate(words)]
    return None  # parsed alone, as before


CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if not _fragment(p))
OVERRIDES = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if p.parent.name in OVERRIDE_DIRS)
RUNS = ([["--config", str(BASE), "--config", str(p)] if p.parent.name in PRESET_DIRS
         else _documented_command(p) or ["--config", str(p)] for p in CONFIGS]
        + [["--config", str(p.parents[1] / "base.yaml"), "--config", str(p)] for p in OVERRIDES]
        + [["--config", str(p.parents[1] / "base.yaml"), "--config", str(p), "--config", str(p.parents[1] / name)]
           for p in OVERRIDES for name in OBJECTIVE_OVERRIDES if (p.parents[1] / name).is_file()])


def _print_config(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", *args, "--print_config"])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.mark.parametrize("args", RUNS, ids=_id)
def test_config_parses(args, capsys):
    code, out, err = _print_config(args, capsys)
    assert code in (0, None), err
    assert "class_path" in out and "${" not in out  # interpolations resolved


def test_every_override_has_its_base():
    assert OVERRIDES and all((p.parents[1] / "base.yaml").is_file() for p in OVERRIDES)


MOVED = moved_configs()


@pytest.mark.parametrize("old", sorted(MOVED))
def test_moved_config_runs_as_its_replacement(old, capsys):
    """An old path (now gone) runs as the files it became, with a warning naming them."""
    assert not (ROOT / old).exists()
    new = MOVED[old]
    assert all((ROOT / value).is_file() for flag, value in zip(new, new[1:]) if flag == "--config")
    expanded = expand_moved(["--config", str(ROOT / old), "--seed_everything", "3"])
    assert expanded[-2:] == ["--seed_everything", "3"] and "--config" in expanded[:-2]
    code, out, err = _print_config(["--config", old], capsys)
    assert code in (0, None), err


@pytest.mark.parametrize("old", ["configs/era/qed.yaml", "configs/dpo/jnk3.yaml", "configs/protein/trpb3c_dpo.yaml"])
def test_moved_config_resolves_as_before(old, capsys, caplog):
    """The old path and the new command give one config; the values the old file held are there."""
    code, before, err = _print_config(["--config", old], capsys)
    assert code in (0, None), err
    assert "configs/" in caplog.text and "split into composable configs" in caplog.text
    new = [str(ROOT / w) if k and MOVED[old][k - 1] == "--config" else w for k, w in enumerate(MOVED[old])]
    code, after, err = _print_config(new, capsys)
    assert code in (0, None), err
    assert before == after
    config = yaml.safe_load(after)
    folder = config["trainer"]["default_root_dir"]
    assert folder == "runs/" + {"configs/era/qed.yaml": "era/qed", "configs/dpo/jnk3.yaml": "dpo/jnk3",
                                "configs/protein/trpb3c_dpo.yaml": "protein/trpb3c_dpo"}[old]
    objective = config["model"]["init_args"]["objective"]["class_path"].rsplit(".", 1)[1]
    assert objective == ("DPO" if "dpo" in old else "ERA")
    if old == "configs/era/qed.yaml":  # β from the task override, γ from the base
        assert config["model"]["init_args"]["objective"]["init_args"] == {
            "beta": 200.0, "gamma": 9.0, "reverse_kl": False, "max_shift": None}


def test_output_folder_is_named_once(capsys, tmp_path):
    """Loggers, checkpoints, export, samples and plots follow ``trainer.default_root_dir``, from a
    later override or the command line alike."""
    out_dir = str(tmp_path / "elsewhere")
    code, out, err = _print_config(["--config", str(ROOT / "configs/era/base.yaml"),
                                    "--config", str(ROOT / "configs/era/tasks/qed.yaml"),
                                    "--trainer.default_root_dir", out_dir], capsys)
    assert code in (0, None), err
    config = yaml.safe_load(out)
    trainer, model = config["trainer"], config["model"]["init_args"]
    assert [lg["init_args"]["save_dir"] for lg in trainer["logger"]] == [out_dir, out_dir]
    assert [cb["init_args"]["dirpath"] for cb in trainer["callbacks"]] == [out_dir + "/checkpoints", out_dir + "/pretrained"]
    assert model["dataset_path"] == out_dir + "/offline_samples.parquet"
    assert "runs/era" not in out


def test_oracle_snippet_by_path_is_the_snippet(capsys):
    """``oracle: ../../oracles/qed.yaml`` in a task override builds the snippet's oracle."""
    code, out, err = _print_config(["--config", str(ROOT / "configs/era/base.yaml"),
                                    "--config", str(ROOT / "configs/era/tasks/qed.yaml")], capsys)
    assert code in (0, None), err
    snippet = yaml.safe_load((ROOT / "configs/oracles/qed.yaml").read_text())
    oracle = yaml.safe_load(out)["model"]["init_args"]["oracle"]
    assert oracle["class_path"] == snippet["class_path"]
    assert oracle["init_args"]["penalty"] == snippet["init_args"]["penalty"]
    assert oracle["init_args"]["transform"]["class_path"] == snippet["init_args"]["transform"]["class_path"]


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


ALIGNMENT_RUNS = [args for args in RUNS if any(
    "lightning_modules.OfflineAlignment" in Path(a).read_text() or "lightning_modules.OnlineAlignment" in Path(a).read_text()
    for f, a in zip(args, args[1:]) if f == "--config")]


@pytest.mark.parametrize("args", ALIGNMENT_RUNS, ids=_id)
def test_alignment_config_builds(args, capsys):
    """More than parsing: the module, its reference checkpoint, oracle and objective are built as the
    resolved config says (``--print_config`` stops before anything is instantiated)."""
    from lightning_modules.alignment import AlignmentBase

    code, out, err = _print_config(args, capsys)
    assert code in (0, None), err
    spec = yaml.safe_load(out)["model"]
    policy_path = str(((spec["init_args"].get("policy") or {}).get("init_args") or {}).get("path", ""))
    if policy_path.startswith("runs/") and not Path(policy_path).exists():
        # a later stage of a protocol starts from an earlier stage's output (the kinase ERA from the
        # JNK3 fine-tune); build it from the shipped checkpoint that stage itself starts from
        stand_in = str(ROOT / "checkpoints" / "molgpt-chembl")
        args = [*args, f"--model.init_args.policy.init_args.path={stand_in}", f"--model.init_args.tokenizer={stand_in}"]
    cli = cli_main(args, run=False)
    model = cli.model
    assert isinstance(model, AlignmentBase) and type(model).__name__ == spec["class_path"].rsplit(".", 1)[1]
    objective = spec["init_args"]["objective"]
    built = model.objective
    if spec["init_args"].get("sft_weight"):  # sft_weight wraps the configured objective in WithSFT
        from lightning_modules.pair_losses import WithSFT

        assert isinstance(built, WithSFT) and built.weight == pytest.approx(spec["init_args"]["sft_weight"])
        built = built.objective
    assert type(built).__name__ == objective["class_path"].rsplit(".", 1)[1]
    for key, value in objective.get("init_args", {}).items():
        assert getattr(built, key) == (pytest.approx(value) if value is not None else None), key
    assert type(model.oracle).__name__ == spec["init_args"]["oracle"]["class_path"].rsplit(".", 1)[1]
    assert model.hparams.lr == pytest.approx(spec["init_args"]["lr"])
    # the policy starts as the frozen reference
    ref = dict(model.reference.named_parameters())
    assert all(torch.equal(p, ref[name]) for name, p in model.model.named_parameters())
