"""Model architectures, named in configs as small classes with a ``build(tokenizer)`` method.

Why classes and not a string switch: a new architecture is one subclass named by
``class_path`` in YAML; nothing central has to change. Every architecture builds a plain
``transformers`` model, so a trained model is saved with ``save_pretrained`` and loads anywhere
with ``AutoModelForCausalLM`` / ``AutoModelForMaskedLM``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    EsmConfig,
    EsmForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from networks.configurable import Configurable
from networks.files import honour_umask

REPO_CHECKPOINTS = Path(__file__).parents[1] / "checkpoints"


class Architecture(Configurable):
    """Builds a ``transformers`` model for a tokenizer.

    ``init_args`` holds the constructor arguments so that an architecture can be stored in a
    checkpoint as plain data (``to_config``) and rebuilt (``from_config``) without pickling
    classes: checkpoints stay loadable with ``torch.load(weights_only=True)``.
    """

    def build(self, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
        raise NotImplementedError


class GPT(Architecture):
    """A GPT-2 causal LM of the given size (transformers ``GPT2LMHeadModel``).

    Args:
        n_layer: transformer blocks.
        n_embd: model width.
        n_head: attention heads.
        n_inner: feed-forward width (``None``: 4 × n_embd).
        n_positions: longest sequence in tokens, special tokens included.
        dropout: residual, embedding and attention dropout.
    """

    def __init__(
        self,
        n_layer: int = 2,
        n_embd: int = 512,
        n_head: int = 8,
        n_inner: int | None = 512,
        n_positions: int = 256,
        dropout: float = 0.1,
    ):
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} is not divisible by n_head={n_head}")
        self.kwargs = dict(
            n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_inner=n_inner, n_positions=n_positions,
            resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
        )
        self.init_args = dict(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_inner=n_inner,
                              n_positions=n_positions, dropout=dropout)

    def build(self, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
        config = GPT2Config(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **self.kwargs,
        )
        return GPT2LMHeadModel(config)


class MolGPT(GPT):
    """The molecular GPT of the ERA paper: 2 layers, width 512, 8 heads, feed-forward 512."""

    def __init__(self, n_positions: int = 256, dropout: float = 0.1):
        super().__init__(2, 512, 8, 512, n_positions, dropout)
        self.init_args = dict(n_positions=n_positions, dropout=dropout)


class DNAGPT(GPT):
    """The DNA GPT of the Iterative Rewarded Soups paper: GPT-2 with 6 layers, width 256."""

    def __init__(self, n_positions: int = 256, dropout: float = 0.1):
        super().__init__(6, 256, 8, 1024, n_positions, dropout)
        self.init_args = dict(n_positions=n_positions, dropout=dropout)


class ESM(Architecture):
    """A small ESM-style masked LM built from a config (no pretrained prior: see docs)."""

    def __init__(
        self, num_hidden_layers: int = 2, hidden_size: int = 64, num_attention_heads: int = 4,
        intermediate_size: int = 128, max_position_embeddings: int = 1026,
    ):
        self.kwargs = dict(
            num_hidden_layers=num_hidden_layers, hidden_size=hidden_size,
            num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
            max_position_embeddings=max_position_embeddings,
        )
        self.init_args = dict(self.kwargs)

    def build(self, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
        config = EsmConfig(
            vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
            mask_token_id=tokenizer.mask_token_id, position_embedding_type="rotary",
            token_dropout=False, **self.kwargs,
        )
        return EsmForMaskedLM(config)


class CheckpointError(ValueError):
    """A model directory is incomplete or does not match its tokenizer."""


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A directory path, or the name of a directory shipped under ``checkpoints/``.

    The repository-relative spelling ``checkpoints/<name>`` (what shipped configs write) also
    finds the shipped directory when the run starts from another working directory.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    parts = Path(name_or_path).parts
    name = parts[1] if len(parts) == 2 and parts[0] == REPO_CHECKPOINTS.name else str(name_or_path)
    shipped = REPO_CHECKPOINTS / name
    if shipped.is_dir():
        return shipped
    available = sorted(p.name for p in REPO_CHECKPOINTS.iterdir() if p.is_dir()) if REPO_CHECKPOINTS.is_dir() else []
    raise FileNotFoundError(f"no checkpoint directory {name_or_path!r}; shipped checkpoints: {available}")


def check_checkpoint_dir(path: Path) -> None:
    """Fail early, naming the missing file, instead of deep inside ``from_pretrained``."""
    missing = [f for f in ("config.json", "tokenizer.json") if not (path / f).is_file()]
    if not any((path / f).is_file() for f in ("model.safetensors", "pytorch_model.bin")):
        missing.append("model.safetensors")
    if missing:
        raise CheckpointError(f"checkpoint directory {path} is missing {missing}")


def check_vocab(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, where: str = "") -> None:
    size = model.get_input_embeddings().num_embeddings
    if size != len(tokenizer):
        raise CheckpointError(
            f"model{' in ' + where if where else ''} has {size} token embeddings but its tokenizer "
            f"has {len(tokenizer)} tokens: they were not trained together"
        )


class Pretrained(Architecture):
    """Load a saved model directory (``save_pretrained`` format) or a shipped checkpoint by name.

    The tokenizer must match the model's embedding table; a mismatch is an error at load time.

    Args:
        path: a directory or the name of a shipped checkpoint.
        masked_lm: load a masked LM (ESM) instead of a causal LM.
        dropout: replaces every dropout probability of the saved model (``None`` keeps them).
            Continued pretraining usually wants its own value; alignment turns dropout off anyway.
        n_positions: lengthen a GPT-2's learned position table to this many positions, for
            continued pretraining on sequences longer than the saved table (molgpt-moses has 128
            positions; the shipped ChEMBL set fits them, longer user data may not). Each new position starts as a copy of the last trained one, so the model's
            outputs on sequences that fit the old table are unchanged. ``None`` keeps the table;
            a shorter table than the saved one is an error (it would drop trained positions).

    The model is returned in training mode, like a freshly built one: ``from_pretrained`` returns
    eval mode, and Lightning keeps a submodule's mode, so a loaded model would otherwise train with
    its dropout silently off.
    """

    def __init__(self, path: str, masked_lm: bool = False, dropout: float | None = None,
                 n_positions: int | None = None):
        if dropout is not None and not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if n_positions is not None and masked_lm:
            raise ValueError("n_positions lengthens a causal GPT's position table; masked_lm models keep theirs")
        self.path = path
        self.masked_lm = masked_lm
        self.dropout = dropout
        self.n_positions = n_positions
        self.init_args = dict(path=path, masked_lm=masked_lm, dropout=dropout, n_positions=n_positions)

    def build(self, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
        path = resolve_checkpoint(self.path)
        check_checkpoint_dir(path)
        auto = AutoModelForMaskedLM if self.masked_lm else AutoModelForCausalLM
        model = auto.from_pretrained(str(path))
        model = model.float()
        check_vocab(model, tokenizer, str(path))
        if self.dropout is not None:
            set_dropout(model, self.dropout)
        if self.n_positions is not None:
            extend_positions(model, self.n_positions)
        return model.train()


def extend_positions(model: PreTrainedModel, n_positions: int) -> PreTrainedModel:
    """Lengthens a GPT-2's learned position embeddings to ``n_positions`` (in place).

    New rows copy the last trained row: a position the model never saw starts out like the
    furthest one it did, which is a better guess than noise, and rows that existed keep their
    values, so outputs on sequences of the old maximum length do not change.
    """
    wpe = getattr(getattr(model, "transformer", None), "wpe", None)
    if not isinstance(wpe, nn.Embedding):
        raise ValueError(f"{type(model).__name__} has no GPT-2 position table (transformer.wpe) to lengthen")
    old = wpe.num_embeddings
    if n_positions < old:
        raise ValueError(f"n_positions={n_positions} is shorter than the saved model's {old} positions")
    if n_positions == old:
        return model
    table = nn.Embedding(n_positions, wpe.embedding_dim, dtype=wpe.weight.dtype, device=wpe.weight.device)
    with torch.no_grad():
        table.weight[:old] = wpe.weight
        table.weight[old:] = wpe.weight[old - 1]
    model.transformer.wpe = table
    model.config.n_positions = n_positions
    return model


_DROPOUT_CONFIG_FIELDS = ("resid_pdrop", "embd_pdrop", "attn_pdrop",  # GPT-2
                          "hidden_dropout_prob", "attention_probs_dropout_prob")  # ESM / BERT


def set_dropout(model: nn.Module, p: float) -> nn.Module:
    """Sets every ``nn.Dropout`` of ``model`` to probability ``p`` (in place; returns the model),
    and the config's dropout fields to match, so that an export says how it was trained."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
    config = getattr(model, "config", None)
    for field in _DROPOUT_CONFIG_FIELDS:
        if config is not None and hasattr(config, field):
            setattr(config, field, p)
    return model


def disable_dropout(model: nn.Module) -> nn.Module:
    """Alignment losses compare log-probabilities of the policy and the reference, and policy-
    gradient ratios divide by the log-probabilities the sampler saw; dropout would make all of
    them noisy, so alignment runs without it whatever mode a trainer sets."""
    return set_dropout(model, 0.0)


def save_pretrained(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: str | Path) -> Path:
    """Write a Hugging Face model directory (weights, config, tokenizer) atomically: into a
    temporary sibling first, then renamed, so a crash never leaves a half-written model."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    honour_umask(tmp, directory=True)  # mkdtemp's 0700 would stay on the model directory
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        for written in tmp.rglob("*"):  # safetensors ≥ 0.8 writes its weights 0600 (safetensors issue 782)
            honour_umask(written, directory=written.is_dir())
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory
