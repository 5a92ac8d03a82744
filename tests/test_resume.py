"""Exact resumption of offline and online ERA through a Lightning Trainer: a run stopped at step k
(checkpoint mid-run, new module and trainer, ``fit(ckpt_path=...)``) ends with the same parameters,
bit for bit, as an uninterrupted run."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_modules import OfflineAlignment, OnlineAlignment
from lightning_modules.pair_losses import ERA
from networks.architectures import GPT
from interrupt import Interrupt
from toy_oracles import Length

STEPS = 10


class CountRounds(L.Callback):
    def __init__(self):
        self.round_steps = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.before = module.rounds

    def on_train_batch_end(self, trainer, module, *args):
        if module.rounds != self.before:
            self.round_steps.append(trainer.global_step - 1)


def _offline(tmp_path):
    return OfflineAlignment(Length(), policy=GPT(1, 32, 2, 64, 64, dropout=0.0), tokenizer="smiles",
                            objective=ERA(beta=5.0), num_samples=64, max_pairs=200, pairs_per_batch=48,
                            dataset_path=str(tmp_path / "samples.parquet"), top_k=None, max_new_tokens=20,
                            val_samples=16, lr=3e-3)


def _online(tmp_path):
    return OnlineAlignment(Length(), policy=GPT(1, 32, 2, 64, 64, dropout=0.0), tokenizer="smiles",
                           objective=ERA(beta=5.0), num_samples=24, max_pairs=100, pairs_per_batch=16,
                           top_k=None, max_new_tokens=20, val_samples=8, lr=3e-3, resample_every=4,
                           steps_per_epoch=7)


def _run(make, tmp_path, name, ckpt_path=None, stop=None):
    """Fit STEPS steps (or stop after ``stop``, checkpointing there); return the module and callbacks."""
    L.seed_everything(0)
    module = make(tmp_path)
    rounds = CountRounds() if isinstance(module, OnlineAlignment) else None
    callbacks = [c for c in [rounds] if c]
    if stop:
        callbacks += [ModelCheckpoint(dirpath=tmp_path / name, every_n_train_steps=stop, save_top_k=-1),
                      Interrupt(stop)]
    trainer = L.Trainer(max_steps=STEPS, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=callbacks, enable_checkpointing=bool(stop),
                        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=str(tmp_path / name))
    trainer.fit(module, ckpt_path=ckpt_path)
    return module, trainer, rounds


def _assert_same_parameters(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("stop", [2, 5, 8])  # mid first epoch (5 batches), mid second, near the end
def test_offline_era_resumes_exactly(tmp_path, stop):
    full, _, _ = _run(_offline, tmp_path, "full")
    _run(_offline, tmp_path, "first", stop=stop)
    ckpt = next((tmp_path / "first").glob(f"*step={stop}.ckpt"))
    resumed, trainer, _ = _run(_offline, tmp_path, "resumed", ckpt_path=str(ckpt))
    assert trainer.global_step == STEPS and trainer.current_epoch == full.trainer.current_epoch
    _assert_same_parameters(full, resumed)
    # and the run really moved: the resumed parameters differ from the checkpoint's
    stored = torch.load(ckpt, weights_only=True)["state_dict"]
    assert not torch.equal(stored["model.lm_head.weight"], resumed.state_dict()["model.lm_head.weight"])


def test_online_era_resumes_exactly_across_a_resampling_round(tmp_path):
    # rounds at steps 0 and 4 (epoch 0) and 7 (epoch 1 starts): stopping at 6 resumes mid-round
    # (the round of step 4 comes from the checkpoint) and the round at step 7 is drawn after resuming
    full, _, full_rounds = _run(_online, tmp_path, "full")
    assert full_rounds.round_steps == [0, 4, 7]
    _run(_online, tmp_path, "first", stop=6)
    ckpt = next((tmp_path / "first").glob("*step=6.ckpt"))
    resumed, trainer, resumed_rounds = _run(_online, tmp_path, "resumed", ckpt_path=str(ckpt))
    assert resumed_rounds.round_steps == [7] and resumed.rounds == full.rounds == 3
    assert trainer.global_step == STEPS
    _assert_same_parameters(full, resumed)
    assert torch.equal(full.round["ids"], resumed.round["ids"])
