"""Faults give clear errors, never silent damage: corrupt or foreign checkpoints, a full disk while
saving, an oracle worker process that dies mid-batch."""

import errno
import io
import logging
import os
import time
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from lightning_modules import CausalLMPretraining, OfflineAlignment
from lightning_modules.checkpoint_checks import IncompatibleCheckpointError
from lightning_modules.checkpoint_io import CorruptCheckpointError, SafeCheckpointIO, verify_checkpoint_file
from main import cli_main
from networks.architectures import GPT
from oracles.base import MoleculeOracle, OracleWorkerError
from toy_oracles import Length

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- checkpoints through the CLI
def _tiny_config(tmp_path) -> Path:
    config = yaml.safe_load((ROOT / "configs/pretrain/molgpt_tiny.yaml").read_text())
    config["trainer"].update(max_steps=1, limit_val_batches=0, num_sanity_val_steps=0, enable_checkpointing=True,
                             enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                             callbacks=[{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                         "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True}}])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _fit(config, *args):
    return cli_main(["fit", "--config", str(config), *args])


@pytest.fixture
def cli_checkpoint(tmp_path, monkeypatch):
    """A real checkpoint written by a one-step ``main.py fit`` (through SafeCheckpointIO)."""
    monkeypatch.setattr("sys.argv", ["main.py"])
    config = _tiny_config(tmp_path)
    cli = _fit(config)
    assert isinstance(cli.trainer.strategy.checkpoint_io, SafeCheckpointIO)
    last = tmp_path / "ckpt" / "last.ckpt"
    assert last.is_file() and not list(last.parent.glob(".tmp-*"))
    return config, last


def test_truncated_or_overwritten_checkpoint_is_named_as_corrupt(tmp_path, cli_checkpoint):
    config, last = cli_checkpoint
    data = last.read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match=f"checkpoint {truncated} .* is truncated or corrupt"):
        _fit(config, "--ckpt_path", str(truncated))

    # a few bytes overwritten inside the weights: torch.load alone would load wrong weights silently
    overwritten = tmp_path / "overwritten.ckpt"
    damaged = bytearray(data)
    damaged[len(data) // 2: len(data) // 2 + 64] = b"\x00" * 64 if data[len(data) // 2] else b"\xff" * 64
    overwritten.write_bytes(bytes(damaged))
    torch.load(overwritten, weights_only=False)  # loads without complaint: that is the danger
    with pytest.raises(CorruptCheckpointError, match=f"checkpoint {overwritten} .*(Bad CRC-32|corrupt)"):
        _fit(config, "--ckpt_path", str(overwritten))

    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CorruptCheckpointError, match="is empty"):
        verify_checkpoint_file(empty)


def test_checkpoint_of_another_config_names_what_differs(cli_checkpoint):
    config, last = cli_checkpoint
    with pytest.raises(IncompatibleCheckpointError,
                       match=r"architecture\.n_embd: 64 in the checkpoint, 32 now.*differ in shape: model\."):
        _fit(config, "--ckpt_path", str(last), "--model.init_args.architecture.init_args.n_embd=32")


def test_checkpoint_of_another_tokenizer_or_module_class_is_named(tmp_path):
    smiles = CausalLMPretraining(GPT(1, 32, 2, 64, 64), "smiles")
    state = {"state_dict": smiles.state_dict(),
             "hyper_parameters": {**smiles.hparams, "_class_path": "lightning_modules.CausalLMPretraining"}}
    torch.save(state, tmp_path / "smiles.ckpt")

    dna = CausalLMPretraining(GPT(1, 32, 2, 64, 64), "dna")
    with pytest.raises(IncompatibleCheckpointError,
                       match=r"tokenizer: 'smiles' in the checkpoint, 'dna' now.*model\.transformer\.wte\.weight"):
        SafeCheckpointIO(module=dna).load_checkpoint(tmp_path / "smiles.ckpt")

    aligner = OfflineAlignment(Length(), policy=GPT(1, 32, 2, 64, 64), tokenizer="smiles")
    with pytest.raises(IncompatibleCheckpointError,
                       match=r"saved by lightning_modules\.CausalLMPretraining, this run is "
                             r"lightning_modules\.alignment\.OfflineAlignment.*not in it: reference\."):
        SafeCheckpointIO(module=aligner).load_checkpoint(tmp_path / "smiles.ckpt")

    # a setting that changes no tensor (the learning rate) is not an error
    same = CausalLMPretraining(GPT(1, 32, 2, 64, 64), "smiles", lr=1.0)
    assert SafeCheckpointIO(module=same).load_checkpoint(tmp_path / "smiles.ckpt")["state_dict"].keys()


# ---------------------------------------------------------------- a full disk while saving
def test_lightning_default_writes_its_temporary_file_elsewhere(tmp_path, monkeypatch):
    """Why SafeCheckpointIO exists: fsspec's local transaction puts the temporary file in the
    system temp directory, so the final move is a copy whenever that is another filesystem."""
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    temps = []
    real_mkstemp = __import__("tempfile").mkstemp

    def spy(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        temps.append(Path(name))
        return fd, name

    monkeypatch.setattr("tempfile.mkstemp", spy)
    (tmp_path / "run").mkdir()
    TorchCheckpointIO().save_checkpoint({"x": torch.zeros(2)}, tmp_path / "run" / "a.ckpt")
    assert temps and all(t.parent != tmp_path / "run" for t in temps)
    temps.clear()
    SafeCheckpointIO().save_checkpoint({"x": torch.zeros(2)}, tmp_path / "run" / "b.ckpt")
    assert temps and all(t.parent == tmp_path / "run" for t in temps)


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save
    calls = []

    def disk_full_on_second_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[: buffer.tell() // 2])  # half of it reached the disk
        f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full_on_second_save)
    directory = tmp_path / "ckpt"
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        plugins=[SafeCheckpointIO()], default_root_dir=str(tmp_path),
                        callbacks=[ModelCheckpoint(dirpath=directory, every_n_train_steps=1, save_top_k=0,
                                                   save_last=True)])
    with pytest.raises(OSError, match="saving checkpoint .*last.ckpt failed.*previous file .* is unchanged") as error:
        trainer.fit(BoringModel())
    assert error.value.errno == errno.ENOSPC and len(calls) == 2
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(p.name for p in directory.iterdir()) == ["last.ckpt"]  # no partial file left behind
    previous = SafeCheckpointIO().load_checkpoint(directory / "last.ckpt", weights_only=False)
    assert previous["global_step"] == 1


# ---------------------------------------------------------------- an oracle worker that dies
class DiesInWorker(MoleculeOracle):
    """Heavy-atom count; a worker process scoring ``poison`` exits at once (as if killed by the
    OOM killer or a crash in RDKit) — always, or only the first time if ``flag`` is a path."""

    name = "dies_in_worker"
    parallel_threshold = 1

    def __init__(self, poison: str, flag: str | None = None):
        super().__init__(n_workers=2)
        self.poison, self.flag, self.parent = poison, flag, os.getpid()

    def compute(self, mol):
        from rdkit import Chem

        if os.getpid() != self.parent and Chem.MolToSmiles(mol) == self.poison:
            if self.flag is None or not os.path.exists(self.flag):
                if self.flag:
                    Path(self.flag).touch()
                os._exit(1)
        return mol.GetNumAtoms()


SMILES = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "CCCC", "C1CC1", "OCCO", "CC#N"]


def test_a_worker_that_dies_once_costs_one_retry(tmp_path, caplog):
    oracle = DiesInWorker("CCCC", flag=str(tmp_path / "died"))
    try:
        with caplog.at_level(logging.WARNING, logger="oracles.base"):
            scores = oracle(SMILES)
    finally:
        oracle.close()
    assert (tmp_path / "died").exists()  # it did die once
    assert scores.values["dies_in_worker"].tolist() == [3, 6, 4, 3, 4, 3, 4, 3]
    assert "worker process died; rescoring the batch of 8 in a fresh pool" in caplog.text


def test_a_worker_that_keeps_dying_is_a_clear_error_naming_the_oracle():
    oracle = DiesInWorker("CCCC")
    try:
        with pytest.raises(OracleWorkerError, match="oracle 'dies_in_worker' .*died twice.*n_workers: 1"):
            oracle(SMILES)
    finally:
        oracle.close()
    assert oracle._pool is None


class HangsInWorker(DiesInWorker):
    """Heavy-atom count; a worker process scoring ``poison`` writes its pid to ``flag`` and never
    returns (an RDKit call stuck in native code)."""

    name = "hangs_in_worker"

    def __init__(self, poison: str, flag: str, worker_timeout: float):
        super().__init__(poison, flag)
        self.worker_timeout = worker_timeout

    def compute(self, mol):
        from rdkit import Chem

        if os.getpid() != self.parent and Chem.MolToSmiles(mol) == self.poison:
            Path(self.flag).write_text(str(os.getpid()))
            time.sleep(3600)
        return mol.GetNumAtoms()


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_a_hung_worker_is_killed_after_worker_timeout_with_an_error_naming_the_oracle(tmp_path):
    flag = tmp_path / "hung_pid"
    oracle = HangsInWorker("CCCC", str(flag), worker_timeout=2.0)
    start = time.monotonic()
    try:
        with pytest.raises(OracleWorkerError, match="oracle 'hangs_in_worker' .*longer than worker_timeout = 2 s"):
            oracle(SMILES)
    finally:
        oracle.close()
    assert time.monotonic() - start < 30  # not the hour the worker would have slept
    assert oracle._pool is None
    pid = int(flag.read_text())
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(pid)  # killed, not left sleeping
    # the same oracle scores again afterwards, in a fresh pool (healthy molecules only)
    healthy = [s for s in SMILES if s != "CCCC"]
    try:
        assert oracle(healthy).values["hangs_in_worker"].tolist() == [3, 6, 4, 3, 3, 4, 3]
    finally:
        oracle.close()


def test_worker_timeout_must_be_positive():
    with pytest.raises(ValueError, match="worker_timeout must be a positive"):
        MoleculeOracle(worker_timeout=0)
