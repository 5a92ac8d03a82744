"""Run by tests/test_ddp.py as its own process: 2-rank CPU DDP (gloo) alignment runs.

usage: python tests/ddp_alignment_worker.py {irs,era,validate} OUT_DIR [SMILES_FILE]
Each rank writes its final parameters (and, for ``validate``, its logged metrics) to OUT_DIR.
"""
import json
import sys
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from callbacks import WeightMergingCallback  # noqa: E402
from datamodules import SmilesFileDataModule  # noqa: E402
from lightning_modules import CausalLMPretraining, MultiObjectiveModule, OnlineAlignment  # noqa: E402
from lightning_modules.pair_losses import ERA  # noqa: E402
from lightning_modules.policy_updates import RLOO  # noqa: E402
from networks.architectures import GPT  # noqa: E402
from oracles.combine import EnergyVector  # noqa: E402
from toy_oracles import CharCount  # noqa: E402  (this script's folder is on sys.path)


def trainer(**kwargs):
    settings = dict(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    settings.update(kwargs)
    return L.Trainer(**settings)


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    L.seed_everything(0)
    policy = GPT(1, 32, 2, 64, 32, dropout=0.0)
    if mode == "irs":
        model = MultiObjectiveModule(EnergyVector([CharCount("C"), CharCount("O"), CharCount("N")]), policy=policy,
                                     update=RLOO(kl_coef=0.01), samples_per_step=8, max_new_tokens=12, lr=3e-3)
        t = trainer(max_steps=5, limit_val_batches=0, callbacks=[WeightMergingCallback(every_n_steps=2, num_active=2)])
        t.fit(model)
        state = model.experts.state_dict()
    elif mode == "era":
        model = OnlineAlignment(CharCount("C"), policy=policy, objective=ERA(beta=5.0), num_samples=16,
                                max_pairs=64, pairs_per_batch=16, resample_every=2, steps_per_epoch=10,
                                max_new_tokens=12, top_k=None, val_samples=8, lr=3e-3)
        t = trainer(max_steps=4, limit_val_batches=0)
        t.fit(model)
        state = model.model.state_dict()
    elif mode == "validate":
        data = SmilesFileDataModule(train=sys.argv[3], val=sys.argv[3], batch_size=8, val_batch_size=8,
                                    cache_dir=str(out / "cache"))
        model = CausalLMPretraining(GPT(1, 32, 2, 64, 128, dropout=0.0), "smiles")
        t = trainer(devices=int(sys.argv[4]) if len(sys.argv) > 4 else 2)
        metrics = t.validate(model, data, verbose=False)[0]
        if t.is_global_zero:
            (out / "metrics.json").write_text(json.dumps(metrics))
        state = model.state_dict()
    else:
        raise SystemExit(f"unknown mode {mode}")
    torch.save({k: v.clone() for k, v in state.items()}, out / f"{mode}_params_{t.global_rank}.pt")
