"""Frozen copies: Lightning's eval-mode warning is silenced for exactly them, not for other modules."""

import warnings

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.frozen import end_expect_frozen, expect_frozen, frozen_copy


class WithReference(L.LightningModule):
    def __init__(self, stray_eval: bool):
        super().__init__()
        self.policy = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        self.reference = frozen_copy(self.policy)
        self.extra = nn.Linear(4, 1)
        if stray_eval:  # a real mistake: a trainable module left in eval mode
            self.extra.eval()

    def on_fit_start(self):
        expect_frozen(self, self.reference)

    def on_train_start(self):
        end_expect_frozen(self)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return (self.policy(x) - self.reference(x)).pow(2).mean() + self.extra(x).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _eval_mode_warnings(module) -> list[str]:
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4))
    return [str(w.message) for w in caught if "in eval mode" in str(w.message)]


def test_frozen_copy_is_eval_and_untrainable():
    copy = frozen_copy(nn.Linear(2, 2))
    assert not copy.training and not any(p.requires_grad for p in copy.parameters())


@pytest.mark.parametrize("stray_eval", [False, True])
def test_only_the_frozen_copies_are_exempt_from_the_eval_mode_warning(stray_eval):
    found = _eval_mode_warnings(WithReference(stray_eval))
    assert bool(found) == stray_eval, found


def test_the_exemption_ends_with_the_fit():
    """A later fit in the same process, with a stray eval module of the same count, still warns."""
    before = list(warnings.filters)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(WithReference(False), DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4))
    assert warnings.filters == before  # not left in place, as a bare filterwarnings would be

    class Stray(WithReference):
        def on_fit_start(self):  # no exemption: 4 modules in eval mode, the same count as before
            pass

    assert _eval_mode_warnings(Stray(False))
