"""Causal-LM pretraining of a sequence GPT (molecules, DNA) on streamed tokenised batches."""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.text import Perplexity

from lightning_modules.rng import restore_rng, rng_state
from networks.architectures import Architecture, MolGPT, check_vocab
from networks.ring_labels import open_ring_contexts, ring_label_ids
from networks.sampling import sample, sequence_logprob
from networks.tokenizers import load_tokenizer

IGNORE = -100


def next_token_loss(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    context_weights: torch.Tensor | None = None):
    """Mean next-token cross-entropy over real (unpadded) target tokens, and the token count.

    ``context_weights`` ([B, L], one per position of ``input_ids``): the weight of predicting the
    token after each position; the mean is then weighted. A weight that depends only on the prefix
    read so far leaves the minimising distribution as it is and only moves the model's capacity."""
    targets = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, IGNORE)
    if context_weights is None:
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                               ignore_index=IGNORE)
        return loss, (targets != IGNORE).sum()
    per_token = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                                ignore_index=IGNORE, reduction="none")
    weights = context_weights[:, :-1].reshape(-1).float() * (targets.reshape(-1) != IGNORE)
    return (per_token * weights).sum() / weights.sum().clamp_min(1e-12), (targets != IGNORE).sum()


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class CausalLMPretraining(L.LightningModule):
    """Next-token pretraining with AdamW and a warm-up/cosine schedule.

    Args:
        architecture: what to build (``networks.architectures.MolGPT``, ``DNAGPT``, ``GPT``, or
            ``Pretrained`` to continue from a saved model).
        tokenizer: named tokenizer or model directory; ``main.py`` passes it on to the data.
        lr: peak learning rate.
        weight_decay: AdamW decay on matrices (not on biases, norms or embeddings' positions).
        betas: AdamW betas.
        warmup_steps: linear warm-up steps.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        open_ring_weight: SMILES only: the training loss's weight on predicting the next token
            where a ring label is open (``networks.ring_labels.open_ring_contexts``; 1: plain
            maximum likelihood). It depends on the prefix alone, so it moves capacity towards
            closing rings without changing the distribution fitted. Validation stays unweighted.
    """

    def __init__(self, architecture: Architecture | dict | None = None, tokenizer: str = "smiles",
                 lr: float = 5e-4, weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.95),
                 warmup_steps: int = 200, min_lr_ratio: float = 0.1, open_ring_weight: float = 1.0):
        super().__init__()
        if not (math.isfinite(open_ring_weight) and open_ring_weight > 0):
            raise ValueError(f"open_ring_weight must be a positive number, got {open_ring_weight}")
        architecture = Architecture.from_config(architecture or MolGPT())
        self.save_hyperparameters(ignore=["architecture"])
        self.hparams["architecture"] = architecture.to_config()  # plain data: weights_only-loadable
        self.tokenizer = load_tokenizer(tokenizer)
        self.model = architecture.build(self.tokenizer)
        check_vocab(self.model, self.tokenizer)
        self.ring_label_ids = ring_label_ids(self.tokenizer.get_vocab()) if open_ring_weight != 1.0 else []
        if open_ring_weight != 1.0 and not self.ring_label_ids:
            raise ValueError("open_ring_weight needs a SMILES tokenizer with ring-label tokens (1-9, %10, …)")
        self.train_loss = MeanMetric()
        self.val_loss = MeanMetric()
        self.val_ppl = Perplexity(ignore_index=IGNORE)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def _loss(self, batch, weighted: bool = False):
        logits = self(batch["input_ids"], batch["attention_mask"])
        weights = None
        if weighted and self.ring_label_ids:
            open_ring = open_ring_contexts(batch["input_ids"], self.ring_label_ids)
            weights = 1.0 + (self.hparams.open_ring_weight - 1.0) * open_ring.float()
        loss, n_tokens = next_token_loss(logits, batch["input_ids"], batch["attention_mask"], weights)
        return logits, loss, n_tokens

    def training_step(self, batch, batch_idx):
        _, loss, n_tokens = self._loss(batch, weighted=True)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {loss.item()} at step {self.global_step}")
        self.train_loss(loss.detach(), n_tokens)
        self.log("train/epoch_loss", self.train_loss, on_step=False, on_epoch=True)  # synced by torchmetrics
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch["input_ids"].size(0))
        self.log("train/tokens", n_tokens.float(), reduce_fx="sum", batch_size=1)
        return loss

    def validation_step(self, batch, batch_idx):
        logits, loss, n_tokens = self._loss(batch)
        targets = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, IGNORE)
        self.val_loss.update(loss, n_tokens)
        self.val_ppl.update(logits[:, :-1].float(), targets)

    def on_validation_epoch_end(self):
        # compute() has already reduced over ranks, so every rank logs the same number; sync_dist
        # only says so (averaging equal values) and keeps Lightning's DDP warning away
        self.log("val/loss", self.val_loss.compute(), prog_bar=True, sync_dist=True)
        self.log("val/ppl", self.val_ppl.compute(), prog_bar=True, sync_dist=True)
        self.val_loss.reset()
        self.val_ppl.reset()

    def test_step(self, batch, batch_idx):
        self.validation_step(batch, batch_idx)

    def on_test_epoch_end(self):
        self.log("test/loss", self.val_loss.compute(), sync_dist=True)
        self.log("test/ppl", self.val_ppl.compute(), sync_dist=True)
        self.val_loss.reset()
        self.val_ppl.reset()

    def predict_step(self, batch, batch_idx):
        """Per-sequence log-probabilities of the batch under the model (``main.py predict``)."""
        logps = sequence_logprob(self.model, batch["input_ids"], batch["attention_mask"])
        return {"record_index": batch.get("record_index"), "logprob": logps.detach().cpu()}

    def configure_optimizers(self):
        hp = self.hparams
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            (decay if param.ndim >= 2 and "wpe" not in name else no_decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.lr, betas=tuple(hp.betas),
        )
        total = self.trainer.estimated_stepping_batches
        total = int(total) if math.isfinite(total) else 10 * hp.warmup_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, hp.warmup_steps, total, hp.min_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def sample(self, n: int, max_new_tokens: int = 128, temperature: float = 1.0,
               top_k: int | None = None, batch_size: int = 512) -> list[str]:
        """Draw ``n`` sequences with the KV-cached sampler (``networks.sampling.sample``)."""
        return sample(self.model, self.tokenizer, n, max_new_tokens, temperature, top_k,
                      batch_size=batch_size).texts

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint.setdefault("rng_states", {})[self.global_rank] = rng_state()  # dropout masks on resume

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_rng(checkpoint.get("rng_states", {}).get(self.global_rank))
