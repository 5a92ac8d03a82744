"""Watch what a generative model produces while it trains."""

from __future__ import annotations

import lightning as L

from lightning_modules.metrics import validity_and_uniqueness


class SampleQuality(L.Callback):
    """Every ``every_n_val_epochs`` validation epochs, sample and log validity and uniqueness.

    Each rank draws its share of ``num_samples``; the metrics are synchronised across ranks.
    The module must provide ``sample(n, max_new_tokens=..., top_k=...) -> list[str]``.
    """

    def __init__(self, every_n_val_epochs: int = 1, num_samples: int = 256, domain: str = "smiles",
                 max_new_tokens: int = 128, top_k: int | None = None, report_at_end: bool = False):
        self.every = every_n_val_epochs
        self.num_samples = num_samples
        self.domain = domain
        self.max_new_tokens = max_new_tokens
        self.top_k = top_k
        self.report_at_end = report_at_end
        self._val_epochs = 0
        self.last: dict[str, float] = {}

    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        share = -(-self.num_samples // trainer.world_size)
        samples = pl_module.sample(share, max_new_tokens=self.max_new_tokens, top_k=self.top_k)
        self.last = {**validity_and_uniqueness(samples, self.domain),
                     "examples": samples[:5]}
        return self.last

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._val_epochs += 1
        if self._val_epochs % self.every:
            return
        result = self._measure(trainer, pl_module)
        pl_module.log("samples/validity", result["validity"], sync_dist=True)
        pl_module.log("samples/uniqueness", result["uniqueness"], sync_dist=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.report_at_end:
            return
        result = self._measure(trainer, pl_module)
        if trainer.is_global_zero:
            print(f"\nAfter {trainer.global_step} steps, {self.num_samples} samples: "
                  f"validity {result['validity']:.3f}, uniqueness {result['uniqueness']:.3f}")
            for example in result["examples"]:
                print(f"  {example}")

    def state_dict(self) -> dict:
        return {"val_epochs": self._val_epochs}

    def load_state_dict(self, state_dict: dict) -> None:
        self._val_epochs = state_dict.get("val_epochs", 0)
