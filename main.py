"""rewardfit command line: ``python main.py {fit,validate,test,predict} --config CONFIG.yaml``.

A thin ``LightningCLI``: models, data, callbacks and oracles are classes named by ``class_path``
in YAML, so adding one never means editing this file. The model's tokenizer is passed on to the
data module, so the two can never disagree.

Checkpoints go through :class:`lightning_modules.checkpoint_io.SafeCheckpointIO` (unless a
config names its own CheckpointIO): written atomically next to their final name, and checked when
resumed from — a truncated or corrupt file, or one from another model config, is an error naming
the file and what is wrong instead of a deep zip, pickle or size-mismatch traceback. The model is
built from the run's config, never silently from the checkpoint's hyper-parameters.

A run folder belongs to one run: ``fit`` without ``--ckpt_path`` into a checkpoint folder that
holds another run's checkpoints is refused (``--overwrite_checkpoints true`` deletes them), and a
folder being written by a live run is locked (``checkpoint_io.claim_run_folder``). SIGTERM saves
``last.ckpt`` and exits with 143 (``callbacks.preemption.CheckpointOnSigterm``). Checkpoints load
as tensors and plain data only; ``--weights_only false`` needs ``--trust_checkpoint_code true``.
Class paths a checkpoint names are imported only from the project's packages, torch, transformers,
Lightning and this run's config. Bad input (a config value, an oracle snippet, a checkpoint) ends
in ``error: …`` naming it, without a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

import lightning as L
from cluster.config_files import PARSER_KWARGS, enable_interpolation, expand_moved
from callbacks.alignment_report import AlignmentReport
from callbacks.preemption import CheckpointOnSigterm
from lightning_modules.alignment import AlignmentBase
from lightning_modules.checkpoint_checks import check_stored_class_paths
from lightning_modules.checkpoint_io import (SafeCheckpointIO, UnsafeCheckpointError, claim_run_folder, release,
                                             trust_checkpoint_code, verify_checkpoint_file)
from networks.architectures import CheckpointError
from networks.configurable import ConfigError, allow_class_paths, class_paths_in
from networks.precision import follow_trainer_precision, lightning_precision
from oracles.config import check_oracles_in

LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "registry")  # ckpt_path values Lightning resolves itself


class RewardfitCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.init_args.tokenizer", "data.init_args.tokenizer")
        parser.add_argument("--overwrite_checkpoints", type=bool, default=False,
                            help="fit: delete the checkpoints an earlier run left in this run's checkpoint folder")
        parser.add_argument("--trust_checkpoint_code", type=bool, default=False,
                            help="allow checkpoints with pickled Python objects (weights_only=false), which "
                                 "run code when loaded: only for files whose origin you trust")

    def _parse_ckpt_path(self) -> None:
        """Lightning's version ``torch.load``s the ``--ckpt_path`` file here (a truncated one fails
        with a zip traceback) and then overrides the model config with the checkpoint's
        hyper-parameters — silently ignoring a config or flag that differs, even the model class.
        Here the file is verified first, and the run's own config builds the model; a checkpoint
        that does not fit it is an error naming what differs (``SafeCheckpointIO``). Only a run
        that names no model takes it from the checkpoint, as Lightning does."""
        subcommand = self.config.get("subcommand")
        settings = self.config[subcommand] if subcommand else self.config
        allow_class_paths(class_paths_in(settings))  # the run's own classes may be named by checkpoints
        self._config_files = ", ".join(str(path) for path in settings.get("config") or []) or "the command line"
        check_oracles_in({"model": settings.get("model")}, self._config_files)  # before anything is sampled
        trusted = trust_checkpoint_code(settings.get("trust_checkpoint_code"))
        if settings.get("weights_only") is False and not trusted:
            raise UnsafeCheckpointError("--weights_only false loads pickled Python objects, which run code "
                                        "chosen by whoever made the checkpoint; only for a file whose origin you "
                                        "trust, add --trust_checkpoint_code true")
        ckpt_path = settings.get("ckpt_path")
        if not ckpt_path or "://" in str(ckpt_path) or str(ckpt_path).split(":")[0] in LIGHTNING_CKPT_NAMES:
            return
        verify_checkpoint_file(ckpt_path)  # a directory, a text file, a truncated file: an error naming it
        if settings.get("model") is None:
            import torch

            stored = torch.load(ckpt_path, map_location="cpu", weights_only=True).get("hyper_parameters") or {}
            check_stored_class_paths(stored, ckpt_path)  # Lightning imports them next
            super()._parse_ckpt_path()

    def instantiate_classes(self) -> None:
        """jsonargparse wraps an error raised while building a class in its own (a union's every
        subtype, the whole namespace); a :class:`ConfigError` is raised as it is."""
        try:
            super().instantiate_classes()
        except Exception as error:
            cause = error
            while cause is not None and not isinstance(cause, ConfigError):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
            raise type(cause)(f"{cause} (config: {getattr(self, '_config_files', 'the command line')})") from None

    def before_fit(self) -> None:
        settings = self.config[self.subcommand]
        self._run_folder_locks = claim_run_folder(self.trainer, settings.get("ckpt_path"),
                                                  bool(settings.get("overwrite_checkpoints")))
        # the saved config.yaml must not carry the one-off permissions into a rerun from it
        settings.overwrite_checkpoints = settings.trust_checkpoint_code = False

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        finally:
            release(getattr(self, "_run_folder_locks", []))

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        follow_trainer_precision(trainer)  # sampling and reference scoring compute as training does
        strategy = trainer.strategy
        if type(strategy.checkpoint_io) is TorchCheckpointIO:  # Lightning's default; a configured one stays
            trust = (self.config[self.subcommand] if self.subcommand else self.config).get("trust_checkpoint_code")
            strategy.checkpoint_io = SafeCheckpointIO(module=self.model, trust_code=bool(trust))
        _add_callback(trainer, CheckpointOnSigterm)
        if isinstance(self.model, AlignmentBase):
            _add_callback(trainer, AlignmentReport)  # histograms, before/after table, summary.json
        return trainer


def _add_callback(trainer: L.Trainer, kind: type) -> None:
    """``kind()`` among the trainer's callbacks unless one is configured, before the checkpoint
    callbacks (they stay last, so they see what the others did at each hook)."""
    if any(isinstance(c, kind) for c in trainer.callbacks):
        return
    first_checkpoint = next((i for i, c in enumerate(trainer.callbacks) if c in trainer.checkpoint_callbacks),
                            len(trainer.callbacks))
    trainer.callbacks.insert(first_checkpoint, kind())


def cli_main(args=None, run: bool = True) -> RewardfitCLI:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    enable_interpolation()  # ${trainer.default_root_dir} across composed configs (cluster/config_files.py)
    if args is None or isinstance(args, list):
        given = sys.argv[1:] if args is None else args
        expanded = expand_moved(given)  # configs/moved.yaml
        # unchanged command-line arguments stay with Lightning, which warns when given both
        args = None if args is None and expanded == given else expanded
    return RewardfitCLI(
        L.LightningModule,
        None,  # any LightningDataModule subclass; optional, as offline alignment makes its own data
        subclass_mode_model=True,
        subclass_mode_data=True,
        # A requeued SLURM job writes its config again into the same directory.
        save_config_callback=SaveConfigCallback,
        save_config_kwargs={"overwrite": True},
        parser_kwargs=PARSER_KWARGS,
        trainer_defaults={"precision": lightning_precision()},  # bf16-mixed where native (networks/precision.py)
        args=args,
        run=run,
    )


if __name__ == "__main__":
    try:
        cli_main()
    except (CheckpointError, ConfigError) as error:  # bad input, named in the message: no traceback
        sys.exit(f"error: {error}")
