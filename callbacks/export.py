"""Write the trained network as a Hugging Face model directory."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from networks.architectures import save_pretrained


class ExportPretrained(L.Callback):
    """For any module with ``model`` and ``tokenizer`` attributes: at the end of ``fit`` (and optionally every validation), rank 0 writes
    ``<dirpath or log_dir/pretrained>`` with ``save_pretrained`` weights, config and tokenizer, so
    the result loads with ``AutoModelForCausalLM.from_pretrained`` anywhere."""

    def __init__(self, dirpath: str | None = None, every_validation: bool = False):
        self.dirpath = dirpath
        self.every_validation = every_validation

    def _target(self, trainer: L.Trainer) -> Path:
        if self.dirpath:
            return Path(self.dirpath)
        root = trainer.log_dir or trainer.default_root_dir
        return Path(root) / "pretrained"

    def _export(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            path = save_pretrained(pl_module.model, pl_module.tokenizer, self._target(trainer))
            print(f"exported pretrained model to {path}")

    def on_validation_end(self, trainer, pl_module):
        if self.every_validation and not trainer.sanity_checking:
            self._export(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self._export(trainer, pl_module)
