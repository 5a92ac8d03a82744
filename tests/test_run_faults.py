"""Faults around a run's folder, end to end on the tiny config: a second run into a folder that holds
another run's checkpoints, two runs at once, SIGTERM (checkpoint, exit status 143, exact resume),
and the permissions of what a run writes through temporary files (the user's umask)."""

import fcntl
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from lightning_modules.checkpoint_io import RunFolderError, SafeCheckpointIO
from main import cli_main

ROOT = Path(__file__).resolve().parents[1]
SIGTERM_EXIT = 128 + int(signal.SIGTERM)


class SigtermAt(L.Callback):
    """Sends this process SIGTERM when a global step ends, as a scheduler or ``kill`` would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture
def data(smiles_file):
    return smiles_file(400)  # 400 ChEMBL SMILES: tokenised in a moment


def _config(tmp_path, data, name="run", steps=4, checkpoints=True, sigterm_at=None) -> Path:
    config = yaml.safe_load((ROOT / "configs/pretrain/molgpt_tiny.yaml").read_text())
    run_dir = tmp_path / name
    callbacks = []
    if checkpoints:
        callbacks.append({"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                          "init_args": {"dirpath": str(run_dir / "checkpoints"), "save_last": True,
                                        "every_n_train_steps": 2}})
    if sigterm_at is not None:
        callbacks.append({"class_path": "test_run_faults.SigtermAt", "init_args": {"step": sigterm_at}})
    config["trainer"].update(max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0,
                             enable_checkpointing=checkpoints, enable_progress_bar=False, enable_model_summary=False,
                             default_root_dir=str(run_dir), deterministic=True, callbacks=callbacks)
    config["data"]["init_args"].update(train=str(data), val_limit=32)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["main.py"])
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # SigtermAt by its class path


def _fit(config, *args):
    return cli_main(["fit", "--config", str(config), *args])


def _step(path) -> int:
    return torch.load(path, weights_only=True, map_location="cpu")["global_step"]


def _same_parameters(a, b):
    a, b = torch.load(a, weights_only=True)["state_dict"], torch.load(b, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------- one run per folder
def test_a_second_run_into_a_used_folder_is_refused_naming_both_ways_out(tmp_path, data):
    config = _config(tmp_path, data, steps=2)
    _fit(config)
    folder = tmp_path / "run" / "checkpoints"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert "last.ckpt" in before

    with pytest.raises(RunFolderError) as error:  # a forgotten --ckpt_path
        _fit(config)
    message = str(error.value)
    assert f"--ckpt_path {folder / 'last.ckpt'}" in message and "--overwrite_checkpoints true" in message
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing written, no last-v1.ckpt

    _fit(config, "--ckpt_path", str(folder / "last.ckpt"), "--trainer.max_steps=4")  # way out 1: resume
    assert _step(folder / "last.ckpt") == 4 and not list(folder.glob("*-v1.ckpt"))

    _fit(config, "--overwrite_checkpoints", "true")  # way out 2: start over, the old checkpoints deleted
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=0-step=2.ckpt", "last.ckpt"]
    assert _step(folder / "last.ckpt") == 2
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["overwrite_checkpoints"] is False  # a rerun from the saved config deletes nothing


def test_a_run_into_a_folder_another_run_is_writing_is_refused(tmp_path, data):
    config = _config(tmp_path, data, steps=1)
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    live = os.open(folder, os.O_RDONLY)  # another run holds the folder
    try:
        fcntl.flock(live, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunFolderError, match=f"another run is writing checkpoints into {folder} right now"):
            _fit(config)
    finally:
        os.close(live)
    assert not list(folder.iterdir())
    _fit(config)  # the lock went with that run; this run's own lock is released when it ends
    _fit(config, "--ckpt_path", str(folder / "last.ckpt"), "--trainer.max_steps=2")


# ---------------------------------------------------------------- SIGTERM
def test_sigterm_saves_a_checkpoint_exits_143_and_resumes_exactly(tmp_path, data):
    interrupted = _config(tmp_path, data, "interrupted", steps=6, sigterm_at=3)
    # the same thread count as the in-process runs below: a different one changes float sums
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "fit", "--config", str(interrupted)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == SIGTERM_EXIT, result.stderr[-3000:]
    last = tmp_path / "interrupted" / "checkpoints" / "last.ckpt"
    assert f"Resume with --ckpt_path {last}" in result.stderr
    assert _step(last) == 3
    assert not list(last.parent.glob(".tmp-*"))

    with pytest.raises(RunFolderError, match="--ckpt_path"):  # a plain rerun would mix the runs
        _fit(interrupted)
    _fit(interrupted, "--ckpt_path", str(last))  # SigtermAt(3) stays quiet: the first step now ends at 4
    assert sorted(p.name for p in last.parent.iterdir()) == ["epoch=0-step=6.ckpt", "last.ckpt"]  # no last-v1
    straight = _config(tmp_path, data, "straight", steps=6)
    _fit(straight)
    _same_parameters(last, tmp_path / "straight" / "checkpoints" / "last.ckpt")


def test_sigterm_without_checkpointing_still_saves_and_the_exit_status_says_so(tmp_path, data):
    config = _config(tmp_path, data, steps=4, checkpoints=False, sigterm_at=2)
    with pytest.raises(SystemExit) as exit_info:  # in process: Lightning's exit, with our status
        _fit(config)
    assert exit_info.value.code == SIGTERM_EXIT
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert _step(last) == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler went with the run
    with pytest.raises(RunFolderError, match=f"--ckpt_path {last}"):
        _fit(config, "--trainer.callbacks=[]")


def test_sigterm_in_a_slurm_job_leaves_an_hpc_checkpoint_the_requeued_job_resumes(tmp_path, data, monkeypatch):
    for key, value in {"SLURM_JOB_ID": "77", "SLURM_JOB_NAME": "rewardfit-test", "SLURM_NTASKS": "1",
                       "SLURM_NTASKS_PER_NODE": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
                       "SLURM_NODELIST": "localhost"}.items():
        monkeypatch.setenv(key, value)
    config = _config(tmp_path, data, steps=4, sigterm_at=2)
    requeue = ["--trainer.callbacks+=callbacks.RequeueOnPreemption", "--trainer.callbacks.requeue=false"]
    with pytest.raises(SystemExit) as exit_info:  # scancel, or SLURM's SIGTERM before a requeue
        _fit(config, *requeue)
    assert exit_info.value.code == SIGTERM_EXIT
    run_dir = tmp_path / "run"
    assert _step(run_dir / "hpc_ckpt_1.ckpt") == 2 and not (run_dir / "checkpoints" / "last.ckpt").exists()
    cli = _fit(config, *requeue)  # the requeued job: no --ckpt_path, the run-folder check lets it resume
    assert cli.trainer.global_step == 4 and _step(run_dir / "checkpoints" / "last.ckpt") == 4


# ---------------------------------------------------------------- the user's umask
@pytest.fixture(params=[0o022, 0o027], ids=["umask022", "umask027"])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_checkpoints_samples_and_caches_follow_the_umask(tmp_path, umask):
    from datamodules.streaming import RecordFile, TokenizedCorpus
    from lightning_modules import OfflineAlignment
    from lightning_modules.pair_losses import ERA
    from networks.architectures import GPT, save_pretrained
    from networks.tokenizers import load_tokenizer
    from toy_oracles import Length

    SafeCheckpointIO().save_checkpoint({"x": torch.zeros(2)}, tmp_path / "a.ckpt")
    assert _mode(tmp_path / "a.ckpt") == 0o666 & ~umask  # 0644 under umask 022, not mkstemp's 0600

    module = OfflineAlignment(Length(), policy=GPT(1, 32, 2, 64, 64, dropout=0.0), tokenizer="smiles",
                              objective=ERA(beta=5.0), num_samples=8, max_pairs=10, pairs_per_batch=4,
                              dataset_path=str(tmp_path / "samples.parquet"), top_k=None, max_new_tokens=8)
    module.prepare_data()
    assert _mode(tmp_path / "samples.parquet") == 0o666 & ~umask

    tokenizer = load_tokenizer("smiles")
    source = tmp_path / "mols.smi"
    source.write_text("CCO\nc1ccccc1\n")
    corpus = TokenizedCorpus.build(RecordFile(str(source)), tokenizer, cache_dir=tmp_path / "cache", progress=False)
    assert _mode(corpus.directory) == 0o777 & ~umask  # not mkdtemp's 0700
    exported = save_pretrained(module.model, tokenizer, tmp_path / "pretrained")
    assert _mode(exported) == 0o777 & ~umask
    files = sorted(exported.rglob("*"))
    assert any(f.name == "model.safetensors" for f in files)  # the weights, which safetensors writes 0600
    assert {f.name: _mode(f) for f in files} == {f.name: 0o666 & ~umask for f in files}
