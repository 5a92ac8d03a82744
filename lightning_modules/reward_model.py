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

import json
import math
import warnings
from collections import OrderedDict
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
from networks.configurable import Configurable

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


# ---------------------------------------------------------------------------------------------
# encoders
# ---------------------------------------------------------------------------------------------
class Encoder(Configurable, nn.Module):
    """Sequence strings → feature vectors ``[n, out_dim]``.

    ``featurize`` turns valid strings into a CPU tensor (or tuple of tensors) and is the only
    place that knows the input format; ``forward`` is differentiable. Like the architectures in
    ``networks.architectures``, an encoder is stored in checkpoints as plain data
    (``to_config``/``from_config``) so checkpoints load with ``weights_only=True``.
    """

    domain = "any"  # what sequences it reads: smiles, dna, protein, any
    out_dim: int
    init_args: dict

    def bind(self, tokenizer: str | None) -> None:
        """Called once by the module with its tokenizer spec (encoders that need one build here)."""

    def featurize(self, sequences: list[str]):
        raise NotImplementedError


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


#: Elements counted explicitly (the rest are "other"); hydrogens include implicit ones.
COUNTED_ELEMENTS = ("H", "C", "N", "O", "F", "S", "Cl", "Br", "P")


class FingerprintMLP(Encoder):
    """Morgan fingerprint (+ composition counts) → MLP, for molecules.

    Why counts: extensive properties (U0, polarizability) grow with the number of atoms and
    bonds; a bit vector cannot say "six carbons", a count vector can. ``composition`` appends
    the element counts (hydrogens included), heavy-atom, bond-type and ring counts, scaled by
    ``composition_scale`` so they enter on the same order as fingerprint counts.

    Args:
        radius, n_bits: Morgan fingerprint settings.
        counts: count fingerprint (True) or bit fingerprint (False).
        composition: append atom/bond/ring counts.
        hidden: MLP layer widths.
        dropout: dropout after each hidden layer.
        linear_composition: also pass the composition counts straight to the output, so that a
            linear head can represent the additive (extensive) part of a property exactly and
            the MLP only has to learn the rest — U0 is ≈ a sum of per-atom energies, which an
            MLP through ReLUs fits only to a few Hartree.
        cache_size: featurised molecules kept in memory (distinct SMILES strings).
    """

    domain = "smiles"

    def __init__(self, radius: int = 2, n_bits: int = 2048, counts: bool = True, composition: bool = True,
                 hidden: list[int] = [512, 256], dropout: float = 0.1, composition_scale: float = 0.1,
                 linear_composition: bool = False, cache_size: int = 500_000):
        super().__init__()
        if linear_composition and not composition:
            raise ValueError("linear_composition needs composition: true")
        self.init_args = dict(radius=radius, n_bits=n_bits, counts=counts, composition=composition,
                              hidden=list(hidden), dropout=dropout, composition_scale=composition_scale,
                              linear_composition=linear_composition)
        self.linear_composition = linear_composition
        self.n_composition = len(COUNTED_ELEMENTS) + 7 if composition else 0
        self.radius, self.n_bits, self.counts, self.composition = radius, n_bits, counts, composition
        self.composition_scale = composition_scale
        self.n_features = n_bits + self.n_composition
        self.mlp = _mlp([self.n_features, *hidden], dropout)
        self.out_dim = (hidden[-1] if hidden else self.n_features) + (self.n_composition if linear_composition else 0)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._generator = None

    def _sparse(self, smiles: str) -> tuple[np.ndarray, np.ndarray]:
        from rdkit import Chem
        from rdkit.Chem import rdFingerprintGenerator

        mol = Chem.MolFromSmiles(smiles)
        if mol is None or mol.GetNumAtoms() == 0:
            raise ValueError(f"invalid SMILES {smiles!r} reached the encoder (filter with is_valid first)")
        if self._generator is None:
            self._generator = rdFingerprintGenerator.GetMorganGenerator(radius=self.radius, fpSize=self.n_bits)
        fp = (self._generator.GetCountFingerprintAsNumPy(mol) if self.counts
              else self._generator.GetFingerprintAsNumPy(mol))
        idx = np.flatnonzero(fp).astype(np.int64)
        val = fp[idx].astype(np.float32)
        if self.composition:
            extra = self._composition(mol) * self.composition_scale
            nz = np.flatnonzero(extra)
            idx = np.concatenate([idx, self.n_bits + nz])
            val = np.concatenate([val, extra[nz].astype(np.float32)])
        return idx, val

    @staticmethod
    def _composition(mol) -> np.ndarray:
        counts = dict.fromkeys(COUNTED_ELEMENTS, 0)
        other = 0
        for atom in mol.GetAtoms():
            symbol = atom.GetSymbol()
            if symbol in counts:
                counts[symbol] += 1
            else:
                other += 1
            counts["H"] += atom.GetTotalNumHs()
        bonds = {1.0: 0, 1.5: 0, 2.0: 0, 3.0: 0}
        for bond in mol.GetBonds():
            order = bond.GetBondTypeAsDouble()
            if order in bonds:
                bonds[order] += 1
        ring_info = mol.GetRingInfo()
        return np.array([*counts.values(), other, mol.GetNumHeavyAtoms(), *bonds.values(), ring_info.NumRings()],
                        dtype=np.float64)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"], state["_generator"] = OrderedDict(), None
        return state

    def featurize(self, sequences: list[str]) -> torch.Tensor:
        """Dense float32 [n, n_features]; each distinct SMILES is computed once and cached sparse."""
        out = torch.zeros(len(sequences), self.n_features)
        for row, smiles in enumerate(sequences):
            entry = self._cache.get(smiles)
            if entry is None:
                entry = self._sparse(smiles)
                self._cache[smiles] = entry
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            idx, val = entry
            out[row, torch.from_numpy(idx)] = torch.from_numpy(val)
        return out

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = self.mlp(features)
        if self.linear_composition:
            # unscaled counts: a weight of ~1 per atom (U0: ~1 standard deviation per carbon) is
            # reached in a few hundred Adam steps, a weight of ~10 would take thousands
            h = torch.cat([h, features[:, self.n_bits:] / self.composition_scale], dim=1)
        return h


_ONE_HOT = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate("ACGT"):
    _ONE_HOT[ord(_c)] = _i


def one_hot_dna(sequences: list[str]) -> torch.Tensor:
    """float32 [n, 4, L] (L = longest; shorter sequences are zero-padded at the end)."""
    length = max(len(s) for s in sequences)
    codes = np.full((len(sequences), length), -1, dtype=np.int64)
    for i, s in enumerate(sequences):
        codes[i, : len(s)] = _ONE_HOT[np.frombuffer(s.encode("ascii"), dtype=np.uint8)]
    out = np.zeros((len(sequences), 4, length), dtype=np.float32)
    rows, cols = np.nonzero(codes >= 0)
    out[rows, codes[rows, cols], cols] = 1.0
    return torch.from_numpy(out)


class DNAConvNet(Encoder):
    """One-hot DNA → convolution blocks → global max- and mean-pooling.

    Why this shape: regulatory activity is mostly carried by short motifs (first layer, width
    ``kernel_size`` ≈ a transcription-factor site) and their combinations (later layers);
    global pooling makes the output independent of where in the 200 bp the motif sits.

    Args:
        channels: filters per convolution layer.
        kernel_sizes: width of each layer's filters.
        pool: max-pool width after every layer but the last.
        dropout: dropout after each block.
    """

    domain = "dna"

    def __init__(self, channels: list[int] = [128, 128, 128], kernel_sizes: list[int] = [15, 5, 5],
                 pool: int = 4, dropout: float = 0.2):
        super().__init__()
        if len(channels) != len(kernel_sizes) or not channels:
            raise ValueError("channels and kernel_sizes need the same, non-zero length")
        self.init_args = dict(channels=list(channels), kernel_sizes=list(kernel_sizes), pool=pool, dropout=dropout)
        blocks: list[nn.Module] = []
        width = 4
        for i, (c, k) in enumerate(zip(channels, kernel_sizes)):
            blocks += [nn.Conv1d(width, c, k, padding=k // 2), nn.BatchNorm1d(c), nn.ReLU()]
            if i < len(channels) - 1:
                blocks.append(nn.MaxPool1d(pool, ceil_mode=True))
            blocks.append(nn.Dropout(dropout))
            width = c
        self.net = nn.Sequential(*blocks)
        self.out_dim = 2 * width

    def featurize(self, sequences: list[str]) -> torch.Tensor:
        return one_hot_dna(sequences)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(x)
        return torch.cat([h.amax(-1), h.mean(-1)], dim=1)


class PooledLM(Encoder):
    """Hidden states of a sequence language model, pooled over real tokens.

    Args:
        architecture: any ``networks.architectures`` config, typically
            ``{class_path: networks.architectures.Pretrained, init_args: {path: molgpt-moses}}``.
        pool: ``mean`` over tokens or ``last`` (the final real token, natural for a causal LM).
        freeze: keep the language model fixed and train only the heads.
    A masked LM (ESM) is named as ``Pretrained(path, masked_lm: true)``.
    """

    def __init__(self, architecture: dict, pool: str = "mean", freeze: bool = False):
        super().__init__()
        from networks.architectures import Architecture

        if pool not in ("mean", "last"):
            raise ValueError(f"pool must be mean or last, got {pool!r}")
        self.architecture = Architecture.from_config(architecture)
        self.init_args = dict(architecture=self.architecture.to_config(), pool=pool, freeze=freeze)
        self.pool, self.freeze = pool, freeze
        self.model = None
        self.tokenizer = None

    def bind(self, tokenizer: str | None) -> None:
        from networks.architectures import check_vocab
        from networks.tokenizers import load_tokenizer

        if tokenizer is None:
            raise ValueError("PooledLM needs the module's tokenizer")
        self.tokenizer = load_tokenizer(tokenizer)
        self.model = self.architecture.build(self.tokenizer)
        check_vocab(self.model, self.tokenizer)
        self.out_dim = self.model.config.hidden_size
        if self.freeze:
            self.model.requires_grad_(False)

    def featurize(self, sequences: list[str]):
        from networks.tokenizers import encode_checked

        ids = encode_checked(self.tokenizer, sequences)
        length = max(len(i) for i in ids)
        input_ids = torch.full((len(ids), length), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), length), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        return input_ids, mask

    def forward(self, features) -> torch.Tensor:
        input_ids, mask = features
        hidden = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        if self.pool == "last":
            return hidden[torch.arange(hidden.size(0), device=hidden.device), mask.sum(1) - 1]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


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


# ---------------------------------------------------------------------------------------------
# saving and loading
# ---------------------------------------------------------------------------------------------
def _plain(value):
    """hparams → JSON-safe plain data."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_reward_model(module: RewardModelModule, directory: str | Path, card: dict | None = None) -> Path:
    """Write ``model.safetensors`` (weights and float64 standardisation buffers) and
    ``config.json`` (constructor arguments, statistics, and ``card`` metadata)."""
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(module, str(directory / "model.safetensors"))  # handles tied weights (a GPT's embeddings)
    init_args = _plain({k: v for k, v in module.hparams.items() if not k.startswith("_")})  # not the CLI's _class_path
    config = {"class_path": f"{RewardModelModule.__module__}.{RewardModelModule.__qualname__}",
              "init_args": init_args,
              "target_mean": module.target_mean.tolist(), "target_std": module.target_std.tolist(),
              "card": card or {}}
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    return directory


def resolve_reward_checkpoint(name_or_path: str | Path) -> Path:
    """A directory, a ``.ckpt`` file, or the name of a directory under ``checkpoints/``."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    shipped = Path(__file__).resolve().parents[1] / "checkpoints" / str(name_or_path)
    if shipped.is_dir():
        return shipped
    raise FileNotFoundError(f"no reward-model checkpoint {name_or_path!r} (a directory with config.json and "
                            f"model.safetensors, a Lightning .ckpt, or a name under checkpoints/)")


def load_reward_model(name_or_path: str | Path, map_location: str | torch.device = "cpu") -> RewardModelModule:
    """Load a directory written by :func:`save_reward_model` or a Lightning checkpoint, in eval mode."""
    path = resolve_reward_checkpoint(name_or_path)
    if path.is_file():
        module = RewardModelModule.load_from_checkpoint(str(path), map_location=map_location, weights_only=True)
        return module.eval()
    from safetensors.torch import load_model

    missing = [f for f in ("config.json", "model.safetensors") if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"reward-model directory {path} is missing {missing}")
    config = json.loads((path / "config.json").read_text())
    module = RewardModelModule(**{k: v for k, v in config["init_args"].items() if not k.startswith("_")})
    load_model(module, str(path / "model.safetensors"), device=str(map_location))
    module.card = config.get("card", {})
    return module.to(map_location).eval()


class ExportRewardModel(L.Callback):
    """At the end of ``fit``, restore the best-validation weights (when a ``ModelCheckpoint``
    monitored something) and write them with :func:`save_reward_model` to ``dirpath``."""

    def __init__(self, dirpath: str, restore_best: bool = True):
        self.dirpath = dirpath
        self.restore_best = restore_best

    def on_fit_end(self, trainer, pl_module):
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
        if self.restore_best and best and Path(best).is_file():
            state = torch.load(best, map_location=pl_module.device, weights_only=True)["state_dict"]
            pl_module.load_state_dict(state)
        if trainer.is_global_zero:
            save_reward_model(pl_module, self.dirpath, {"best_checkpoint": best or None})
