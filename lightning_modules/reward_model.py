"""Reward models: predict measured properties of sequences, to serve them as oracles.

Some rewards have no formula — QM9 quantum-chemical properties, cell-type-specific DNA activity —
so they are learned from assay data and then used like any oracle (``oracles.learned``). This
module trains such a predictor in the framework and makes it trustworthy enough to optimise
against: held-out metrics per task, and a saved model that reproduces its own predictions.

Parts, each named in YAML:

- an **encoder** (sequence strings → a vector): :class:`FingerprintMLP` (RDKit Morgan count or bit
  fingerprints plus atom/bond counts → MLP; features computed once per distinct SMILES and
  cached), :class:`DNAConvNet` (one-hot DNA → 1-D CNN), :class:`PooledLM` (hidden states of any
  ``networks.architectures`` model, e.g. ``Pretrained(path: molgpt-moses)``, mean-pooled);
- **multi-task heads**, one output per task;
- the **task**: ``regression`` (targets standardised with the training mean/std, which live in
  float64 buffers so a save/load round trip reproduces predictions bit for bit), ``binary`` /
  ``multilabel`` (sigmoid per task) or ``multiclass`` (softmax over the tasks as classes);
- **losses** MSE / Huber / BCE / cross-entropy, pure functions below;
- **metrics** per task as torchmetrics: MAE and RMSE in source units, R², Pearson, Spearman
  (regression); AUROC (classification; one-vs-rest for multiclass, with a confusion matrix).

:meth:`RewardModelModule.predict` maps strings to values in source units (probabilities for
classifiers), NaN for invalid inputs. :func:`save_reward_model` / :func:`load_reward_model` write
and read a self-contained directory (``model.safetensors`` + ``config.json``), the format shipped
under ``checkpoints/reward-*``; Lightning ``.ckpt`` files load too.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import BinaryAUROC, MulticlassAccuracy, MulticlassAUROC, MulticlassConfusionMatrix
from torchmetrics.regression import (
    MeanAbsoluteError,
    MeanSquaredError,
    PearsonCorrCoef,
    R2Score,
    SpearmanCorrCoef,
)

from lightning_modules.causal_lm import warmup_cosine
from networks.encoders import (COUNTED_ELEMENTS, DNAConvNet, Encoder, FingerprintMLP,  # noqa: F401 (also importable from here)
                               PooledLM, one_hot_dna)

log = logging.getLogger(__name__)

# Spearman keeps every prediction of the epoch on purpose (held-out sets are small); say it once, not per metric.
warnings.filterwarnings("ignore", message=".*will save all targets and predictions.*")

TASK_TYPES = ("regression", "binary", "multilabel", "multiclass")
LOSSES = {"regression": ("mse", "huber"), "binary": ("bce",), "multilabel": ("bce",), "multiclass": ("ce",)}


# ---------------------------------------------------------------------------------------------
# losses (pure functions)
# ---------------------------------------------------------------------------------------------
def regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "mse", delta: float = 1.0) -> torch.Tensor:
    """Mean over tasks and rows of the squared (``mse``) or Huber (``huber``) error, in
    standardised units so that every task weighs the same whatever its scale."""
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "huber":
        return F.huber_loss(pred, target, delta=delta)
    raise ValueError(f"regression loss must be mse or huber, got {kind!r}")


def binary_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy on logits, one column per label (``pos_weight`` rebalances positives)."""
    return F.binary_cross_entropy_with_logits(logits, target.float(), pos_weight=pos_weight)


def multiclass_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Softmax cross-entropy; ``target`` holds class indices."""
    return F.cross_entropy(logits, target.long(), label_smoothing=label_smoothing)


def _to_device(features, device):
    if isinstance(features, (tuple, list)):
        return type(features)(f.to(device) for f in features)
    return features.to(device)


# ---------------------------------------------------------------------------------------------
# the LightningModule
# ---------------------------------------------------------------------------------------------
class RewardModelModule(L.LightningModule):
    """Sequence → one value per task, trained on a labelled table (``datamodules.tables``).

    Args:
        tasks: output names, in the order of the data module's ``targets`` (checked at fit).
        encoder: an :class:`Encoder` (class_path/init_args in YAML).
        task: ``regression``, ``binary``, ``multilabel`` or ``multiclass``.
        tokenizer: the sequence kind (``smiles``, ``dna``, ``dna-k4``, ``protein``) or a model
            directory; decides what a valid input is and is linked to the data by ``main.py``.
        loss: ``mse`` / ``huber`` (regression), ``bce`` (binary, multilabel), ``ce`` (multiclass);
            default by task.
        huber_delta: Huber threshold in standardised units.
        head_hidden: width of a hidden layer in each task's head (``None``: linear heads).
        lr, weight_decay, warmup_steps, min_lr_ratio: AdamW with warm-up and cosine decay.
        target_mean, target_std: standardisation statistics; by default computed from the
            training split at the start of ``fit`` and then kept in the checkpoint.
        sequence_length: inputs of another length are invalid (DNA models trained on 200 bp).
        reverse_complement_average: DNA predictions (and validation/test metrics) average the
            sequence and its reverse complement.
        label_smoothing: for the multiclass cross-entropy (the DHS classes overlap: many sites
            are open in more than one cell type).
        predict_batch_size: batch size of :meth:`predict`.
    """

    def __init__(self, tasks: list[str], encoder: Encoder | dict | None = None, task: str = "regression",
                 tokenizer: str | None = "smiles", loss: str | None = None, huber_delta: float = 1.0,
                 head_hidden: int | None = None, lr: float = 1e-3, weight_decay: float = 1e-4,
                 warmup_steps: int = 100, min_lr_ratio: float = 0.01, target_mean: list[float] | None = None,
                 target_std: list[float] | None = None, sequence_length: int | None = None,
                 reverse_complement_average: bool = False, label_smoothing: float = 0.0,
                 predict_batch_size: int = 1024):
        super().__init__()
        if not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be distinct names, got {tasks}")
        if task not in TASK_TYPES:
            raise ValueError(f"task must be one of {TASK_TYPES}, got {task!r}")
        if task == "binary" and len(tasks) != 1:
            raise ValueError("binary has one task; use multilabel for several 0/1 labels")
        if task == "multiclass" and len(tasks) < 2:
            raise ValueError("multiclass needs at least two classes")
        loss = loss or LOSSES[task][0]
        if loss not in LOSSES[task]:
            raise ValueError(f"loss {loss!r} does not fit a {task} task; use one of {LOSSES[task]}")
        encoder = Encoder.from_config(encoder or FingerprintMLP())
        from datamodules.tables import sequence_domain

        domain = sequence_domain(tokenizer)
        if encoder.domain != "any" and domain not in (encoder.domain, "any"):
            raise ValueError(f"{type(encoder).__name__} reads {encoder.domain} sequences but tokenizer "
                             f"{tokenizer!r} means {domain}")
        self.save_hyperparameters(ignore=["encoder", "target_mean", "target_std"])
        self.hparams["encoder"] = encoder.to_config()  # plain data: weights_only-loadable checkpoints
        self.hparams["loss"] = loss
        self.domain = encoder.domain if encoder.domain != "any" else domain
        encoder.bind(tokenizer)
        self.encoder = encoder
        k = len(tasks)
        if head_hidden:
            self.heads = nn.ModuleList(nn.Sequential(nn.Linear(encoder.out_dim, head_hidden), nn.ReLU(),
                                                     nn.Linear(head_hidden, 1)) for _ in range(k))
        else:
            self.heads = nn.ModuleList([nn.Linear(encoder.out_dim, k)])  # k linear heads in one matrix
        # float64 buffers: saved in the state dict, so standardisation round-trips exactly
        self.register_buffer("target_mean", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("target_std", torch.ones(k, dtype=torch.float64))
        self.register_buffer("stats_set", torch.tensor(False))
        if (target_mean is None) != (target_std is None):
            raise ValueError("give both target_mean and target_std, or neither")
        if target_mean is not None:
            self.set_target_statistics(target_mean, target_std)
        self.train_loss = MeanMetric()
        self.eval_loss = MeanMetric()
        self.metrics = nn.ModuleDict({stage: self._make_metrics() for stage in ("val", "test")})
        self.confusion: dict[str, np.ndarray] = {}

    # -- standardisation ----------------------------------------------------------------------
    def set_target_statistics(self, mean, std) -> None:
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float64))
        std = torch.as_tensor(np.asarray(std, dtype=np.float64))
        if mean.shape != self.target_mean.shape or std.shape != self.target_std.shape:
            raise ValueError(f"statistics for {len(self.hparams.tasks)} tasks expected, got {tuple(mean.shape)}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError("target statistics must be finite with std > 0")
        self.target_mean.copy_(mean)
        self.target_std.copy_(std)
        self.stats_set.fill_(True)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return
        targets = getattr(datamodule, "targets", None)
        if targets is not None and list(targets) != list(self.hparams.tasks):
            raise ValueError(f"model tasks {list(self.hparams.tasks)} differ from the data's targets {list(targets)}: "
                             "they must name the same columns in the same order")
        data_task = getattr(datamodule, "task", None)
        if data_task is not None and data_task != self.hparams.task:
            raise ValueError(f"model task {self.hparams.task!r} but data task {data_task!r}")
        if stage == "fit" and not bool(self.stats_set) and self.hparams.task == "regression":
            mean, std = datamodule.target_statistics()
            self.set_target_statistics(mean, std)

    def on_fit_start(self) -> None:
        """Start the linear composition path of a :class:`FingerprintMLP` at the least-squares fit.

        Why: the additive part of an extensive property (U0 ≈ Σ per-atom energies) is a linear
        function of the atom counts that least squares solves exactly in milliseconds, whereas
        gradient descent needs thousands of steps to get there; the network then learns only
        the residual. Done once, on a fresh model (not when resuming)."""
        enc, hp = self.encoder, self.hparams
        if self.global_step == 0 and getattr(enc, "linear_composition", False) and getattr(enc, "heavy_atoms", False):
            log.warning("FingerprintMLP(linear_composition=true, heavy_atoms=true): the heavy-atom count is the sum of "
                        "the element counts, so the head can grow opposite weights on it and on the elements whose "
                        "float32 cancellation makes predictions depend on the batch (reward-qm9 had ±1.1e5); set "
                        "heavy_atoms: false")
        datamodule = getattr(self.trainer, "datamodule", None)
        if (hp.task != "regression" or not getattr(enc, "linear_composition", False) or self.global_step > 0
                or datamodule is None or "train" not in getattr(datamodule, "data", {})
                or not (len(self.heads) == 1 and isinstance(self.heads[0], nn.Linear))):
            return
        sequences, targets = datamodule.data["train"]
        rows = np.random.default_rng(0).permutation(len(sequences))[:20_000]
        counts = enc.featurize([sequences[i] for i in rows])[:, enc.n_bits:].double() / enc.composition_scale
        design = torch.cat([counts, torch.ones(len(rows), 1, dtype=torch.float64)], dim=1)
        z = (torch.as_tensor(targets[rows], dtype=torch.float64) - self.target_mean.cpu()) / self.target_std.cpu()
        coef = torch.linalg.lstsq(design, z, driver="gelsd").solution  # [n_comp + 1, k]
        with torch.no_grad():
            head = self.heads[0]
            head.weight[:, -enc.n_composition:] = coef[:-1].T.to(head.weight)
            head.bias.copy_(coef[-1].to(head.bias))
            head.weight[:, :-enc.n_composition].mul_(0.1)  # the MLP starts as a small correction

    # -- model ----------------------------------------------------------------------------------
    def _make_metrics(self) -> nn.ModuleDict:
        tasks, kind = self.hparams.tasks, self.hparams.task
        if kind == "regression":
            return nn.ModuleDict({t: MetricCollection({
                "mae": MeanAbsoluteError(), "rmse": MeanSquaredError(squared=False),
                "r2": R2Score(), "pearson": PearsonCorrCoef(), "spearman": SpearmanCorrCoef()}) for t in tasks})
        if kind == "multiclass":
            k = len(tasks)
            return nn.ModuleDict({"auroc": MulticlassAUROC(k, average=None),
                                  "accuracy": MulticlassAccuracy(k, average="micro"),
                                  "confusion": MulticlassConfusionMatrix(k)})
        return nn.ModuleDict({t: MetricCollection({"auroc": BinaryAUROC()}) for t in tasks})

    def forward(self, features) -> torch.Tensor:
        """Raw outputs [n, k]: standardised values (regression) or logits."""
        h = self.encoder(features)
        if len(self.heads) == 1 and isinstance(self.heads[0], nn.Linear):
            return self.heads[0](h)
        return torch.cat([head(h) for head in self.heads], dim=1)

    def outputs_to_values(self, out: torch.Tensor) -> torch.Tensor:
        """Raw outputs → float64 values in source units (regression) or probabilities."""
        kind = self.hparams.task
        if kind == "regression":
            return out.double() * self.target_std + self.target_mean
        if kind == "multiclass":
            return out.double().softmax(-1)
        return out.double().sigmoid()

    def _loss(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        if hp.task == "regression":
            z = ((targets.double() - self.target_mean) / self.target_std).to(out.dtype)
            return regression_loss(out, z, hp.loss, hp.huber_delta)
        if hp.task == "multiclass":
            return multiclass_loss(out, targets, hp.label_smoothing)
        return binary_loss(out, targets)

    def _outputs(self, sequences: list[str]) -> torch.Tensor:
        """Raw outputs for valid strings; in eval mode averaged with the reverse complement when
        ``reverse_complement_average`` is set, so that validation/test metrics describe exactly
        what :meth:`predict` (and so the oracle) serves."""
        out = self(_to_device(self.encoder.featurize(sequences), self.device))
        if self.hparams.reverse_complement_average and self.domain == "dna" and not self.training:
            from datamodules.tables import reverse_complement

            rc = self(_to_device(self.encoder.featurize([reverse_complement(s) for s in sequences]), self.device))
            out = (out + rc) / 2  # average of raw outputs (standardised values or logits)
        return out

    def _step(self, batch):
        out = self._outputs(batch["sequences"])
        return out, self._loss(out, batch["targets"])

    def training_step(self, batch, batch_idx):
        if self.hparams.task == "regression" and not bool(self.stats_set):
            raise RuntimeError("target statistics are not set: fit with a table data module, or give "
                               "target_mean/target_std")
        out, loss = self._step(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {loss.item()} at step {self.global_step}")
        self.train_loss(loss.detach())
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=out.size(0))
        self.log("train/epoch_loss", self.train_loss, on_step=False, on_epoch=True)
        return loss

    def _eval_step(self, batch, stage: str):
        out, loss = self._step(batch)
        self.eval_loss.update(loss.detach(), out.size(0))
        metrics, targets, kind = self.metrics[stage], batch["targets"], self.hparams.task
        if kind == "regression":
            z_target = (targets.double() - self.target_mean) / self.target_std
            values = self.outputs_to_values(out)
            for j, t in enumerate(self.hparams.tasks):
                m = metrics[t]
                # MAE/RMSE in source units (float64 differences); the scale-free metrics on
                # standardised values, which keeps float32 metric states well conditioned
                m["mae"].update(values[:, j], targets[:, j].double())
                m["rmse"].update(values[:, j], targets[:, j].double())
                for name in ("r2", "pearson", "spearman"):
                    m[name].update(out[:, j].float(), z_target[:, j].float())
        elif kind == "multiclass":
            probs = out.float().softmax(-1)
            for name in ("auroc", "accuracy", "confusion"):
                metrics[name].update(probs, targets.long())
        else:
            for j, t in enumerate(self.hparams.tasks):
                metrics[t].update(out[:, j].float().sigmoid(), targets[:, j].long())

    def _eval_end(self, stage: str):
        self.log(f"{stage}/loss", self.eval_loss.compute(), prog_bar=True)
        self.eval_loss.reset()
        metrics, kind, tasks = self.metrics[stage], self.hparams.task, self.hparams.tasks
        summary = []
        if kind == "multiclass":
            auroc = metrics["auroc"].compute()
            for j, t in enumerate(tasks):
                self.log(f"{stage}/{t}/auroc", auroc[j])
            self.log(f"{stage}/accuracy", metrics["accuracy"].compute())
            self.confusion[stage] = metrics["confusion"].compute().cpu().numpy()
            summary.append(auroc.mean())
            for m in metrics.values():
                m.reset()
        else:
            for t in tasks:
                values = metrics[t].compute()
                for name, value in values.items():
                    self.log(f"{stage}/{t}/{name}", value)
                summary.append(values["r2"] if kind == "regression" else values["auroc"])
                metrics[t].reset()
        name = "r2" if kind == "regression" else "auroc"
        self.log(f"{stage}/mean_{name}", torch.stack([torch.as_tensor(s, dtype=torch.float32) for s in summary]).mean(),
                 prog_bar=True)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self):
        self._eval_end("val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def on_test_epoch_end(self):
        self._eval_end("test")

    def predict_step(self, batch, batch_idx):
        """Predicted values (source units) and targets of a batch (``main.py predict``)."""
        return {"sequences": batch["sequences"], "predictions": self.predict(batch["sequences"]),
                "targets": batch["targets"].cpu().numpy()}

    def configure_optimizers(self):
        hp = self.hparams
        decay, no_decay = [], []
        for param in self.parameters():
            if param.requires_grad:
                (decay if param.ndim >= 2 else no_decay).append(param)
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=hp.lr)
        total = self.trainer.estimated_stepping_batches
        total = int(total) if math.isfinite(total) else 10 * max(1, hp.warmup_steps)
        warmup = min(hp.warmup_steps, max(1, total // 10)) if hp.warmup_steps else 0
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, total, hp.min_lr_ratio) if warmup
            else warmup_cosine(step + 1, 1, total, hp.min_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # -- inference ------------------------------------------------------------------------------
    def is_valid(self, sequences: list) -> np.ndarray:
        """Which inputs the model can score (parsable SMILES; ACGT DNA of the trained length)."""
        from datamodules.tables import sequence_validator

        ok = sequence_validator(self.domain, self.hparams.sequence_length)
        valid = np.array([bool(ok(s)) for s in sequences], dtype=bool)
        if self.domain == "any" and isinstance(self.encoder, PooledLM) and valid.any():
            from networks.tokenizers import is_encodable

            valid &= np.array([bool(v) and is_encodable(self.encoder.tokenizer, s) for v, s in zip(valid, sequences)])
        return valid

    @torch.no_grad()
    def predict(self, sequences: list[str], batch_size: int | None = None) -> np.ndarray:
        """float64 [n, k] in source units (probabilities for classifiers); NaN rows for invalid inputs."""
        sequences = list(sequences)
        out = np.full((len(sequences), len(self.hparams.tasks)), np.nan)
        valid = self.is_valid(sequences)
        index = np.flatnonzero(valid)
        size = batch_size or self.hparams.predict_batch_size
        was_training = self.training
        self.eval()
        try:
            for start in range(0, len(index), size):
                rows = index[start:start + size]
                batch = [sequences[i] for i in rows]
                raw = self._outputs(batch)
                out[rows] = self.outputs_to_values(raw).cpu().numpy()
        finally:
            self.train(was_training)
        return out


# saving and loading live in lightning_modules.reward_io; importable from here as before
from lightning_modules.reward_io import (ExportRewardModel, load_reward_model, resolve_reward_checkpoint,  # noqa: E402,F401
                                         save_reward_model)
