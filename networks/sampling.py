"""Fast autoregressive sampling and exact sequence log-probabilities for causal LMs.

Alignment methods spend most of their time here, so the sampler is a tight loop over the model's
KV cache instead of ``transformers.generate`` (whose per-step processors and stopping criteria
cost more than a 3M-parameter model's forward pass). It returns, per sequence, the
log-probability under the distribution it actually sampled from (temperature, top-k, top-p
applied) and, on request, under the unmodified model — the quantity ERA's reference term and
:func:`sequence_logprob` use. Both are exact sums of per-token log-probabilities including the
final ``<eos>``.

Layout of returned ids: ``[<bos>, t1, …, tk, <pad>…]`` where ``tk`` is ``<eos>`` unless the row
hit ``max_new_tokens``; ``attention_mask`` marks ``<bos>…tk``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from networks.decoding import stepper_for
from networks.precision import autocast, compute_dtype


@dataclass
class SampleBatch:
    """Samples with their token ids and log-probabilities (all tensors on the CPU)."""

    input_ids: torch.Tensor  # [n, L] long
    attention_mask: torch.Tensor  # [n, L] long
    logprobs: torch.Tensor  # [n] log-prob under the sampling distribution
    model_logprobs: torch.Tensor | None  # [n] log-prob under the unmodified model (T=1, no truncation)
    finished: torch.Tensor  # [n] bool: the row ended with <eos>
    texts: list[str]

    def __len__(self) -> int:
        return self.input_ids.size(0)


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Apply temperature, then top-k, then nucleus (top-p) truncation; removed entries are -inf."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (use top_k=1 for greedy decoding)")
    logits = logits / temperature
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        remove_sorted = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the token crossing p
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


class TokenDecoder:
    """Vectorised ids → strings for character-level vocabularies (SMILES, DNA, protein).

    Special tokens map to the empty string, and each row is cut at its first ``<eos>``; the
    per-row ``str.join`` runs in C, with no Python loop over tokens.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        vocab = tokenizer.get_vocab()
        table = np.empty(max(vocab.values()) + 1, dtype=object)
        table[:] = ""
        special = set(tokenizer.all_special_ids)
        for token, index in vocab.items():
            table[index] = "" if index in special else token
        self.table = table
        self.eos_id = tokenizer.eos_token_id

    def __call__(self, ids: torch.Tensor) -> list[str]:
        array = ids.cpu().numpy()
        if self.eos_id is not None:
            after_eos = np.cumsum(array == self.eos_id, axis=1) > 0
            array = np.where(after_eos, self.eos_id, array)
        return list(map("".join, self.table[array]))


@torch.no_grad()
def sample(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    n: int,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    batch_size: int = 1024,
    generator: torch.Generator | None = None,
    return_model_logprobs: bool = False,
    decoder: TokenDecoder | None = None,
    precision: str | torch.dtype | None = None,
) -> SampleBatch:
    """Draw ``n`` sequences, ``batch_size`` at a time, stopping each row at ``<eos>``.

    Reproducible: the same ``generator`` seed (on the model's device) gives the same samples.
    ``precision`` (``auto``/``bf16``/``fp32``): the compute precision; ``None`` follows an active
    autocast, else the ``REWARDFIT_PRECISION`` setting (:mod:`networks.precision`). Below fp32,
    ``model_logprobs`` come from a scoring pass (:func:`scoring_logprob`), exactly as training
    computes them.
    """
    device = next(model.parameters()).device
    dtype = compute_dtype(device, precision)
    decoder = decoder or TokenDecoder(tokenizer)
    was_training = model.training
    model.eval()
    parts = []
    # Below fp32, one token at a time and the whole sequence at once round differently (bf16: 0.03
    # nats per molecule on average), so model_logprobs then come from a scoring pass (below) and
    # the loop does not add them up
    incremental = return_model_logprobs and dtype == torch.float32
    try:
        stepper = stepper_for(model, min(batch_size, n), max_new_tokens, dtype) if n > 0 else None
        for start in range(0, n, batch_size):
            parts.append(_sample_batch(stepper, tokenizer, min(batch_size, n - start), max_new_tokens,
                                       temperature, top_k, top_p, generator, incremental, device))
    finally:
        model.train(was_training)
    width = max(p[0].size(1) for p in parts)
    pad = tokenizer.pad_token_id
    ids = torch.cat([F.pad(p[0], (0, width - p[0].size(1)), value=pad) for p in parts])
    mask = torch.cat([F.pad(p[1], (0, width - p[1].size(1)), value=0) for p in parts])
    logprobs = torch.cat([p[2] for p in parts])
    model_lp = torch.cat([p[3] for p in parts]) if incremental else None
    finished = torch.cat([p[4] for p in parts])
    if return_model_logprobs and not incremental:
        # scored as a training forward does, so a stored reference log-prob matches the policy's
        # at the start exactly
        model_lp = scoring_logprob(model, ids, mask, batch_size=batch_size, precision=dtype)
    return SampleBatch(ids, mask, logprobs, model_lp, finished, decoder(ids))


def _fill_holes(still: torch.Tensor) -> torch.Tensor:
    """Slots to keep, in their new order: the first ``still.sum()`` slots, with each finished one
    among them taken by a live row from the tail (so few rows move)."""
    m = int(still.sum())
    rows = torch.arange(m, device=still.device)
    holes = ~still[:m]
    rows[holes] = still[m:].nonzero().squeeze(1) + m
    return rows


def _sample_batch(stepper, tokenizer, rows, max_new_tokens, temperature, top_k, top_p, generator,
                  want_model_lp, device):
    """Sample one batch with ``stepper`` (reset first, so its buffers serve every batch). Finished
    rows are dropped from the forward pass (and their KV cache rows discarded) once enough have
    finished, so short sequences stop costing compute."""
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    stepper.reset()
    tokens = torch.full((rows,), bos, dtype=torch.long, device=device)
    out = torch.full((rows, max_new_tokens + 1), pad, dtype=torch.long, device=device)
    out[:, 0] = bos
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    logprob = torch.zeros(rows, device=device)
    model_lp = torch.zeros(rows, device=device)
    active = torch.arange(rows, device=device)  # rows still fed to the model
    width = 1
    for position in range(max_new_tokens):
        logits = stepper.step(tokens, position)
        logp = filter_logits(logits, temperature, top_k, top_p).log_softmax(-1)
        if top_k == 1:
            new = logits.argmax(-1, keepdim=True)
        else:
            new = torch.multinomial(logp.exp(), 1, generator=generator)
        live = ~done[active]
        logprob[active] += torch.where(live, logp.gather(1, new).squeeze(1), 0.0)
        if want_model_lp:
            model_lp[active] += torch.where(live, logits.log_softmax(-1).gather(1, new).squeeze(1), 0.0)
        new = new.squeeze(1).masked_fill(~live, pad)
        out[active, position + 1] = new
        width = position + 2
        done[active] |= new == eos
        still = ~done[active]
        n_still = int(still.sum())
        if n_still == 0:
            break
        tokens = new.masked_fill(~live, bos)  # finished rows are fed <bos>, never <pad>
        if n_still < active.numel() and (stepper.cheap_keep or n_still <= 0.875 * active.numel()):
            keep = _fill_holes(still)  # drop finished rows from the batch
            stepper.keep(keep)
            active, tokens = active[keep], tokens[keep]
    ids = out[:, :width]
    # attention covers <bos> … the first <eos> (inclusive), or everything if none was produced
    is_eos = (ids == eos).long()
    mask = ((torch.cumsum(is_eos, dim=1) - is_eos) == 0).long()
    return ids.cpu(), mask.cpu(), logprob.cpu(), model_lp.cpu(), done.cpu()


def sequence_logprob(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     reduce: bool = True) -> torch.Tensor:
    """log π(sequence) = Σ_t log p(x_t | x_<t) over the real tokens after ``<bos>``.

    Works on right-padded batches (the layout :func:`sample` returns). Differentiable, so the
    same function gives the policy terms of alignment losses. ``reduce=False`` returns the
    per-token log-probabilities, zero at padding.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    targets = input_ids[:, 1:]
    token_lp = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    token_lp = token_lp * attention_mask[:, 1:].to(token_lp.dtype)
    return token_lp.sum(-1) if reduce else token_lp


def bucketed_logprob(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     buckets: int = 4, reduce: bool = True) -> torch.Tensor:
    """:func:`sequence_logprob` with less padding: rows sorted by length, cut into ``buckets``
    groups, each trimmed to its own longest row. The same values (a real token never attends to
    padding; equal to the one-pass call up to float rounding) for fewer positions: 128 molecules
    padded to their longest carry ~29 % padding, in 4 buckets ~7 %. Differentiable; rows come back
    in the given order; ``reduce=False`` gives per-token values zero-padded to the given width."""
    lengths = attention_mask.sum(1)
    order = torch.argsort(lengths)
    parts = []
    for rows in torch.tensor_split(order, max(1, min(buckets, len(order)))):
        width = max(int(lengths[rows].max()), 2)
        lp = sequence_logprob(model, input_ids[rows, :width], attention_mask[rows, :width], reduce=reduce)
        parts.append(lp if reduce else F.pad(lp, (0, input_ids.size(1) - width)))
    return torch.cat(parts)[torch.argsort(order)]


@torch.no_grad()
def scoring_logprob(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    batch_size: int = 1024, precision: str | torch.dtype | None = None) -> torch.Tensor:
    """:func:`sequence_logprob` without gradients, ``batch_size`` rows at a time, on the model's
    device; returns a CPU tensor. Why: scoring 10,000 samples under a frozen reference in one
    forward pass holds every layer's activations for all of them at once (gigabytes for a 3.5M
    model); chunks keep the memory to one batch's. Rows are scored as they are given (no trimming
    of padding), so a set that fits one chunk gives the same numbers as the unchunked call."""
    device = next(model.parameters()).device
    with autocast(device, compute_dtype(device, precision)):
        parts = [sequence_logprob(model, input_ids[start:start + batch_size].to(device),
                                  attention_mask[start:start + batch_size].to(device)).cpu()
                 for start in range(0, len(input_ids), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0)
