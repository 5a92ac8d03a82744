"""rewardfit command line: ``python main.py {fit,validate,test,predict} --config CONFIG.yaml``.

A thin ``LightningCLI``: models, data, callbacks and oracles are classes named by ``class_path``
in YAML, so adding one never means editing this file. The model's tokenizer is passed on to the
data module, so the two can never disagree.
"""

from __future__ import annotations

import logging

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

import lightning as L


class RewardfitCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.init_args.tokenizer", "data.init_args.tokenizer")


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
