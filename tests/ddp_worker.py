"""Run by tests/test_ddp.py as its own process: 2-rank CPU DDP (gloo) pretraining.

usage: python tests/ddp_worker.py SMILES_FILE OUT_DIR
"""
import json
import sys
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datamodules import SmilesFileDataModule  # noqa: E402
from lightning_modules import CausalLMPretraining  # noqa: E402
from networks.architectures import GPT  # noqa: E402


class Rec(L.Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen += batch["record_index"].tolist()

    def on_train_end(self, trainer, pl_module):
        out = sys.argv[2]
        json.dump(self.seen, open(f"{out}/seen_{trainer.global_rank}.json", "w"))
        torch.save({k: v.clone() for k, v in pl_module.state_dict().items()}, f"{out}/params_{trainer.global_rank}.pt")


if __name__ == "__main__":
    L.seed_everything(0)
    data = SmilesFileDataModule(train=sys.argv[1], batch_size=8, cache_dir=f"{sys.argv[2]}/cache")
    model = CausalLMPretraining(GPT(1, 32, 2, 64, 128, dropout=0.0), "smiles", lr=1e-3, warmup_steps=2)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0, callbacks=[Rec()])
    trainer.fit(model, data)
