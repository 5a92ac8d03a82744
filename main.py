"""rewardfit command line: ``python main.py {fit,validate,test,predict} --config CONFIG.yaml``.

A thin ``LightningCLI``: models, data, callbacks and oracles are classes named by ``class_path``
in YAML, so adding one never means editing this file. The model's tokenizer is passed on to the
data module, so the two can never disagree.

Checkpoints go through :class:`lightning_modules.checkpoint_io.SafeCheckpointIO` (unless a
config names its own CheckpointIO): written atomically next to their final name, and checked when
resumed from — a truncated or corrupt file, or one from another model config, is an error naming
the file and what is wrong instead of a deep zip, pickle or size-mismatch traceback. The model is
built from the run's config, never silently from the checkpoint's hyper-parameters.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

import lightning as L
from lightning_modules.checkpoint_io import SafeCheckpointIO, verify_checkpoint_file


class RewardfitCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.init_args.tokenizer", "data.init_args.tokenizer")

    def _parse_ckpt_path(self) -> None:
        """Lightning's version ``torch.load``s the ``--ckpt_path`` file here (a truncated one fails
        with a zip traceback) and then overrides the model config with the checkpoint's
        hyper-parameters — silently ignoring a config or flag that differs, even the model class.
        Here the file is verified first, and the run's own config builds the model; a checkpoint
        that does not fit it is an error naming what differs (``SafeCheckpointIO``). Only a run
        that names no model takes it from the checkpoint, as Lightning does."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        verify_checkpoint_file(ckpt_path)
        if self.config[subcommand].get("model") is None:
            super()._parse_ckpt_path()

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        strategy = trainer.strategy
        if type(strategy.checkpoint_io) is TorchCheckpointIO:  # Lightning's default; a configured one stays
            strategy.checkpoint_io = SafeCheckpointIO(module=self.model)
        return trainer


def cli_main(args=None, run: bool = True) -> RewardfitCLI:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return RewardfitCLI(
        L.LightningModule,
        None,  # any LightningDataModule subclass; optional, as offline alignment makes its own data
        subclass_mode_model=True,
        subclass_mode_data=True,
        # A requeued SLURM job writes its config again into the same directory.
        save_config_callback=SaveConfigCallback,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


if __name__ == "__main__":
    cli_main()
