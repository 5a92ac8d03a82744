"""A masked protein language model as an exact, sampleable policy over variants at chosen sites.

Why a site policy. A masked LM (ESM) has no left-to-right likelihood of a whole sequence, but
directed evolution only varies a handful of sites of a fixed parent. Fix an order over the k
sites; feed the parent with every site still to be chosen replaced by ``<mask>`` and read the
distribution of the next site from the logits at its position:

    π(a₁ … a_k) = Π_t p(a_{o(t)} | parent, a_{o(1)} … a_{o(t−1)})

Each factor is a softmax over the 20 standard amino acids only (every other token — special
tokens, ``X``, ``B``, ``U``, ``Z``, ``O``, gaps — gets probability 0), so π is a proper
distribution over exactly the 20^k variants (tested by enumeration) and log π(variant) is an
exact sum of k terms. That exactness is what ERA and DPO need: their losses are written in
sequence log-probabilities of the policy and of a frozen reference.

Sampling runs the k steps on a whole batch (one forward pass per site); scoring given variants
teacher-forces all k steps at once (n·k rows in one pass, differentiable) and returns the same
numbers as the sampler, both under the distribution actually sampled from (temperature, top-k)
and under the unmodified model (T = 1, no truncation — the π used by the losses).

Variants are strings of the residues at the sites in the order the sites are given (``"VDGV"``
for GB1's sites 39, 40, 41, 54) — the convention of :class:`oracles.fitness_table.FitnessTable`.
Sites are 1-indexed positions in the parent. The generation order is a separate, fixed
permutation (default: the sites in the order given).

Models: any local Hugging Face ESM masked-LM directory (e.g. a downloaded
``facebook/esm2_t6_8M_UR50D``) through ``Pretrained(path, masked_lm=True)``, or the small
randomly initialised :class:`networks.architectures.ESM`. The latter has *no protein prior*: its
site distributions start near uniform over the 20 amino acids, so "sampling from the reference"
is then close to uniform random sampling, and everything the policy learns comes from the
measurements.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, PreTrainedModel, PreTrainedTokenizerBase

from networks.architectures import Architecture, CheckpointError, Pretrained, check_vocab, resolve_checkpoint
from networks.tokenizers import AMINO_ACIDS, ESM_VOCAB, load_tokenizer


class SiteError(ValueError):
    """Parent, sites, order or a variant do not fit together."""


class SiteLayout:
    """The parent sequence, the varied sites and the generation order, as token ids.

    Args:
        parent: the parent protein sequence (one-letter codes; ESM alphabet).
        sites: 1-indexed positions of the varied sites in ``parent``, distinct.
        tokenizer: the model's tokenizer (ESM alphabet, ``<cls> seq <eos>`` layout).
        order: the generation order as a permutation of ``range(k)`` (indices into ``sites``);
            default: the sites in the order given.
        context: residues of the parent kept on each side of the outermost sites (``None``: the
            whole parent). A compute saving for long parents (TrpB has 390 residues): the model
            then sees the fragment ``parent[min(site) − context : max(site) + context]``, as
            ESM-2 saw crops of long proteins in pretraining. Keep ``None`` when the prior
            matters and the sequence is short.
    """

    def __init__(self, parent: str, sites: Sequence[int], tokenizer: PreTrainedTokenizerBase,
                 order: Sequence[int] | None = None, context: int | None = None):
        parent = str(parent).strip().upper()
        if not parent:
            raise SiteError("the parent sequence is empty")
        vocab = tokenizer.get_vocab()
        unknown = sorted({c for c in parent if c not in vocab})
        if unknown:
            raise SiteError(f"parent sequence has letters {unknown} outside the model's alphabet")
        sites = [int(s) for s in sites]
        if not sites:
            raise SiteError("no sites given")
        bad = [s for s in sites if not 1 <= s <= len(parent)]
        if bad:
            raise SiteError(f"site(s) {bad} outside the parent sequence of length {len(parent)} (sites are 1-indexed)")
        if len(set(sites)) != len(sites):
            raise SiteError(f"sites {sites} are not distinct")
        order = list(range(len(sites))) if order is None else [int(o) for o in order]
        if sorted(order) != list(range(len(sites))):
            raise SiteError(f"order {order} is not a permutation of range({len(sites)})")
        if tokenizer.mask_token_id is None:
            raise SiteError("the tokenizer has no <mask> token: a site policy needs a masked LM")
        if context is not None and context < 0:
            raise SiteError(f"context must be >= 0 or None, got {context}")
        self.parent, self.sites, self.order, self.context = parent, sites, order, context
        self.k = len(sites)
        # the fragment the model sees: parent[start:stop] (0-indexed)
        start = 0 if context is None else max(0, min(sites) - 1 - context)
        stop = len(parent) if context is None else min(len(parent), max(sites) + context)
        self.window = (start, stop)
        self.mask_id = int(tokenizer.mask_token_id)
        cls_id, eos_id = vocab.get("<cls>", tokenizer.cls_token_id), vocab.get("<eos>", tokenizer.eos_token_id)
        self.parent_ids = torch.tensor([cls_id] + [vocab[c] for c in parent[start:stop]] + [eos_id], dtype=torch.long)
        #: token ids of the 20 amino acids, in ``AMINO_ACIDS`` order (the policy's alphabet)
        self.aa_ids = torch.tensor([vocab[a] for a in AMINO_ACIDS], dtype=torch.long)
        self._aa_index = {a: i for i, a in enumerate(AMINO_ACIDS)}
        #: token position of each site (``<cls>`` is position 0, so site s sits at s − start)
        self.positions = torch.tensor([s - start for s in sites], dtype=torch.long)

    @property
    def wild_type(self) -> str:
        return "".join(self.parent[s - 1] for s in self.sites)

    @property
    def n_variants(self) -> int:
        return len(AMINO_ACIDS) ** self.k

    def encode(self, variants: Sequence[str]) -> torch.Tensor:
        """Variant strings → amino-acid indices ``[n, k]`` (columns in site order)."""
        out = torch.empty(len(variants), self.k, dtype=torch.long)
        for row, variant in enumerate(variants):
            if not isinstance(variant, str) or len(variant) != self.k:
                raise SiteError(f"variant {variant!r} is not {self.k} residues (one per site)")
            try:
                out[row] = torch.tensor([self._aa_index[c] for c in variant.upper()])
            except KeyError as err:
                raise SiteError(f"variant {variant!r} has {err.args[0]!r}, not one of the 20 amino acids") from None
        return out

    def decode(self, indices: torch.Tensor) -> list[str]:
        """Amino-acid indices ``[n, k]`` → variant strings."""
        return ["".join(AMINO_ACIDS[i] for i in row) for row in indices.tolist()]

    def full_sequence(self, variant: str) -> str:
        """The parent with the variant's residues at the sites."""
        seq = list(self.parent)
        for site, residue in zip(self.sites, variant):
            seq[site - 1] = residue
        return "".join(seq)

    def masked(self, n: int, device=None) -> torch.Tensor:
        """``n`` copies of the parent's ids with every site masked."""
        ids = self.parent_ids.to(device).repeat(n, 1)
        ids[:, self.positions.to(device)] = self.mask_id
        return ids


def restricted_logprobs(logits: torch.Tensor, aa_ids: torch.Tensor, temperature: float = 1.0,
                        top_k: int | None = None) -> torch.Tensor:
    """Log-probabilities over the 20 amino acids from full-vocabulary logits ``[..., V]``.

    Every other token is dropped (probability 0) before the softmax; then temperature, then
    top-k within the 20. ``temperature=1, top_k=None`` is the model's own distribution π.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = logits.float().index_select(-1, aa_ids.to(logits.device)) / temperature
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits.log_softmax(-1)


@dataclass
class SiteSample:
    """Sampled variants with their log-probabilities (CPU tensors)."""

    variants: list[str]
    indices: torch.Tensor  # [n, k] amino-acid indices, columns in site order
    logprobs: torch.Tensor  # [n] under the sampling distribution (temperature, top-k)
    model_logprobs: torch.Tensor  # [n] under the model (T = 1, 20 amino acids): log π
    attempts: int = 1  # draws it took (more than 1 when excluding or deduplicating)

    def __len__(self) -> int:
        return len(self.variants)


def _device(model: PreTrainedModel) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _sample_once(model, layout: SiteLayout, n: int, temperature, top_k, generator, chunk_size):
    device = _device(model)
    parts = []
    for start in range(0, n, chunk_size):
        rows = min(chunk_size, n - start)
        ids = layout.masked(rows, device)
        chosen = torch.zeros(rows, layout.k, dtype=torch.long, device=device)
        lp = torch.zeros(rows, device=device)
        model_lp = torch.zeros(rows, device=device)
        for site in layout.order:
            position = int(layout.positions[site])
            logits = model(input_ids=ids).logits[:, position]
            sample_logp = restricted_logprobs(logits, layout.aa_ids, temperature, top_k)
            pick = torch.multinomial(sample_logp.exp(), 1, generator=generator)
            lp += sample_logp.gather(1, pick).squeeze(1)
            model_lp += restricted_logprobs(logits, layout.aa_ids).gather(1, pick).squeeze(1)
            chosen[:, site] = pick.squeeze(1)
            ids[:, position] = layout.aa_ids.to(device)[pick.squeeze(1)]
        parts.append((chosen.cpu(), lp.cpu(), model_lp.cpu()))
    return tuple(torch.cat(p) for p in zip(*parts))


def sample_variants(model: PreTrainedModel, layout: SiteLayout, n: int, temperature: float = 1.0,
                    top_k: int | None = None, generator: torch.Generator | None = None,
                    exclude: Iterable[str] | None = None, unique: bool = False, max_attempts: int = 20,
                    oversample: float = 2.0, chunk_size: int = 512) -> SiteSample:
    """Draw ``n`` variants site by site in ``layout.order``.

    Without ``exclude``/``unique`` this is plain i.i.d. sampling. With them (directed evolution
    asks for *new* variants) it draws batches, keeps the first occurrence of each variant not in
    ``exclude``, and stops when it has ``n`` or after ``max_attempts`` draws — so a policy that
    has collapsed onto measured variants returns fewer than ``n`` (the caller decides what to
    do; see ``SiteSample.attempts``). Keeping the first occurrence of each new variant in a
    stream of i.i.d. draws is successive sampling without replacement from π restricted to the
    unmeasured variants; the returned log-probabilities are still the unconditioned log π.

    Reproducible: the same ``generator`` seed (on the model's device) gives the same variants.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    excluded = set(exclude or ())
    dedupe = unique or bool(excluded)
    was_training = model.training
    model.eval()
    try:
        if not dedupe:
            idx, lp, mlp = _sample_once(model, layout, n, temperature, top_k, generator, chunk_size)
            return SiteSample(layout.decode(idx), idx, lp, mlp)
        if len(excluded) >= layout.n_variants:
            raise SiteError(f"every one of the {layout.n_variants} variants is excluded")
        seen, keep_idx, keep_lp, keep_mlp, attempts = set(excluded), [], [], [], 0
        while len(keep_idx) < n and attempts < max_attempts:
            attempts += 1
            want = max(1, int((n - len(keep_idx)) * oversample))
            idx, lp, mlp = _sample_once(model, layout, want, temperature, top_k, generator, chunk_size)
            for row, variant in enumerate(layout.decode(idx)):
                if variant not in seen:
                    seen.add(variant)
                    keep_idx.append(idx[row])
                    keep_lp.append(lp[row])
                    keep_mlp.append(mlp[row])
                    if len(keep_idx) == n:
                        break
    finally:
        model.train(was_training)
    if not keep_idx:
        empty = torch.zeros(0)
        return SiteSample([], torch.zeros(0, layout.k, dtype=torch.long), empty, empty.clone(), attempts)
    idx = torch.stack(keep_idx)
    return SiteSample(layout.decode(idx), idx, torch.stack(keep_lp), torch.stack(keep_mlp), attempts)


def variant_logprob(model: PreTrainedModel, layout: SiteLayout, variants: Sequence[str] | torch.Tensor,
                    temperature: float = 1.0, top_k: int | None = None, chunk_size: int | None = None,
                    per_site: bool = False) -> torch.Tensor:
    """Exact log π(variant) = Σ_t log p(a_{o(t)} | earlier sites), for given variants.

    All k conditionals of all variants are computed in one batched forward pass of n·k rows
    (row t of a variant has the sites chosen before step t filled in and the rest masked), in
    chunks of ``chunk_size`` rows if given. Differentiable (it is the policy term of the pair
    losses); runs in whatever train/eval mode the model is in. ``temperature``/``top_k`` give
    the log-probability under the sampling distribution, matching ``SiteSample.logprobs``.
    ``per_site`` returns the ``[n, k]`` per-step terms (columns in generation order).
    """
    indices = variants if isinstance(variants, torch.Tensor) else layout.encode(variants)
    device = _device(model)
    indices = indices.to(device)
    n, k = indices.shape
    if k != layout.k:
        raise SiteError(f"variants have {k} sites, the layout {layout.k}")
    aa_ids = layout.aa_ids.to(device)
    positions = layout.positions.to(device)
    order = torch.tensor(layout.order, device=device)
    # rows [n, k, L]: step t has the sites order[:t] filled, the others masked
    base = layout.masked(1, device)[0]
    filled = base.clone().repeat(n, 1)
    filled[:, positions] = aa_ids[indices]
    known = torch.zeros(k, k, dtype=torch.bool, device=device)  # known[t, site]
    for t in range(k):
        known[t, order[:t]] = True
    rows = base.repeat(n, k, 1)
    site_ids = torch.where(known.unsqueeze(0), filled[:, positions].unsqueeze(1), layout.mask_id)  # [n, k, k]
    rows[:, :, positions] = site_ids
    rows = rows.reshape(n * k, -1)
    step_position = positions[order].repeat(n)  # [n*k]
    targets = indices[:, order].reshape(-1)  # [n*k]
    size = chunk_size or rows.size(0)
    terms = []
    for start in range(0, rows.size(0), size):
        chunk = rows[start:start + size]
        logits = model(input_ids=chunk).logits
        picked = logits[torch.arange(chunk.size(0), device=device), step_position[start:start + size]]
        logp = restricted_logprobs(picked, aa_ids, temperature, top_k)
        terms.append(logp.gather(1, targets[start:start + size].unsqueeze(1)).squeeze(1))
    per = torch.cat(terms).reshape(n, k) if terms else torch.zeros(n, k, device=device)
    return per if per_site else per.sum(1)


# ---------------------------------------------------------------------- loading


def _hf_esm_vocab(path: Path) -> list[str] | None:
    vocab = path / "vocab.txt"
    return [line.strip() for line in vocab.read_text().splitlines() if line.strip()] if vocab.is_file() else None


def build_masked_lm(architecture: Architecture | dict | None, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """The masked LM behind a site policy.

    ``None`` → the small random-init :class:`~networks.architectures.ESM` (no prior).
    ``Pretrained(path, masked_lm=True)`` → a saved directory. A directory downloaded from the
    Hugging Face hub for ESM-2 (``config.json``, weights, ``vocab.txt``, no ``tokenizer.json``)
    is accepted too: its ``vocab.txt`` must list exactly the ESM alphabet this package's
    ``protein`` tokenizer uses, so token ids agree.
    """
    from networks.architectures import ESM

    architecture = Architecture.from_config(architecture) if architecture is not None else ESM()
    if isinstance(architecture, Pretrained):
        if not architecture.masked_lm:
            raise CheckpointError(f"{architecture.path}: a site policy needs a masked LM; set masked_lm: true")
        path = resolve_checkpoint(architecture.path)
        vocab = _hf_esm_vocab(path)
        if not (path / "tokenizer.json").is_file() and vocab is not None:
            if vocab != ESM_VOCAB:
                raise CheckpointError(f"{path}/vocab.txt is not the ESM alphabet the protein tokenizer uses")
            if not (path / "config.json").is_file():
                raise CheckpointError(f"checkpoint directory {path} is missing ['config.json']")
            model = AutoModelForMaskedLM.from_pretrained(str(path)).float()
            check_vocab(model, tokenizer, str(path))
            return model
    model = architecture.build(tokenizer)
    if getattr(model.config, "mask_token_id", None) is None and tokenizer.mask_token_id is None:
        raise CheckpointError("the model has no mask token: a site policy needs a masked LM")
    return model


class SitePolicy:
    """Convenience bundle of a masked LM and a :class:`SiteLayout`.

    ``SitePolicy.load(parent, sites)`` uses the small random-init ESM; pass
    ``path="/models/esm2_t6_8M_UR50D"`` for a pretrained prior.
    """

    def __init__(self, model: PreTrainedModel, layout: SiteLayout):
        self.model, self.layout = model, layout

    @classmethod
    def load(cls, parent: str, sites: Sequence[int], path: str | None = None,
             order: Sequence[int] | None = None, context: int | None = None,
             tokenizer: str = "protein") -> "SitePolicy":
        tok = load_tokenizer(tokenizer)
        model = build_masked_lm(Pretrained(path, masked_lm=True) if path else None, tok)
        return cls(model, SiteLayout(parent, sites, tok, order, context))

    def sample(self, n: int, **kwargs) -> SiteSample:
        return sample_variants(self.model, self.layout, n, **kwargs)

    def logprob(self, variants: Sequence[str], **kwargs) -> torch.Tensor:
        return variant_logprob(self.model, self.layout, variants, **kwargs)
