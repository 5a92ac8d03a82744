"""Token-by-token forward passes for sampling: a static-cache GPT-2 stepper and the generic path.

:func:`networks.sampling.sample` asks :func:`stepper_for` for an object with
``step(tokens, position) -> logits`` and ``keep(rows)``. For GPT-2 (every shipped causal LM) that is
:class:`GPT2Stepper`: the same arithmetic as ``GPT2LMHeadModel`` in eval mode, with the keys and
values written into one preallocated buffer instead of a cache that is concatenated at every step,
and without the per-call work of the transformers forward (masks, cache objects, output classes).
In bf16 it follows autocast's rules: matmuls and attention in bf16, the residual stream and layer
norms in float32, so its log-probabilities agree with a bf16-mixed training forward.
Any other causal LM gets :class:`ModelStepper` around its own forward and KV cache.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from networks.precision import autocast

_GELU = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}


class ModelStepper:
    """Any ``transformers`` causal LM through its own forward and KV cache."""

    cheap_keep = False  # keep() copies the whole cache: compact only when enough rows finished

    def __init__(self, model, dtype: torch.dtype | None = None):
        self.model, self.past = model, None
        self.autocast = autocast(next(model.parameters()).device, dtype or torch.float32)
        # transformers 5.x names the cache ``cache``; ``past_key_values`` is deprecated there
        params = inspect.signature(model.forward).parameters
        self.cache_kwarg = "cache" if "cache" in params else "past_key_values"

    def reset(self) -> None:
        """Start a new batch: forget the cache."""
        self.past = None

    def step(self, tokens: torch.Tensor, position: int) -> torch.Tensor:
        with self.autocast:
            out = self.model(input_ids=tokens.unsqueeze(1), use_cache=True, **{self.cache_kwarg: self.past})
        self.past = out[self.cache_kwarg]
        return out.logits[:, -1].float()

    def keep(self, rows: torch.Tensor) -> None:
        for layer in getattr(self.past, "layers", []):
            layer.batch_select_indices(rows)


class GPT2Stepper:
    """``GPT2LMHeadModel`` (eval mode) one position at a time over a preallocated KV cache.

    Rows are the first ``n`` of the buffer; :meth:`keep` moves the rows still sampling to the
    front, copying only the rows whose slot changes (so compacting at every step costs one copy
    per finished row). ``dtype`` is the compute precision of the matmuls (weights are cast once);
    logits come back as float32.
    """

    cheap_keep = True

    @staticmethod
    def supports(model) -> bool:
        config = getattr(model, "config", None)
        return (type(model).__name__ == "GPT2LMHeadModel" and config is not None
                and config.activation_function in _GELU and config.scale_attn_weights
                and not config.scale_attn_by_inverse_layer_idx and not config.reorder_and_upcast_attn
                and not getattr(config, "add_cross_attention", False))

    def __init__(self, model, rows: int, length: int, dtype: torch.dtype | None = None):
        config = model.config
        if length > config.n_positions:
            raise ValueError(f"cannot sample {length} new tokens: the model has {config.n_positions} positions")
        body = model.transformer
        dtype = dtype or body.wte.weight.dtype
        cast = lambda t: t.detach().to(dtype)  # noqa: E731  matmul operands
        keep = lambda t: t.detach().float()  # noqa: E731  residual stream and layer norms
        self.dtype, self.eps = dtype, config.layer_norm_epsilon
        self.heads, self.width = config.n_head, config.n_embd
        self.gelu = _GELU[config.activation_function]
        self.wte, self.wpe = keep(body.wte.weight), keep(body.wpe.weight)
        self.head = cast(model.lm_head.weight).t()
        self.ln_f = (keep(body.ln_f.weight), keep(body.ln_f.bias))
        scale = torch.ones(3 * self.width)
        scale[:self.width] = (self.width // self.heads) ** -0.5  # fold attention's 1/sqrt(d) into q
        scale = scale.to(body.wte.weight.device)
        self.blocks = [(keep(block.ln_1.weight), keep(block.ln_1.bias),
                        cast(block.attn.c_attn.weight * scale), cast(block.attn.c_attn.bias * scale),
                        cast(block.attn.c_proj.weight), cast(block.attn.c_proj.bias),
                        keep(block.ln_2.weight), keep(block.ln_2.bias),
                        cast(block.mlp.c_fc.weight), cast(block.mlp.c_fc.bias),
                        cast(block.mlp.c_proj.weight), cast(block.mlp.c_proj.bias))
                       for block in body.h]
        shape = (len(self.blocks), rows, self.heads, length, self.width // self.heads)
        device = self.wte.device
        self.keys = torch.empty(shape, dtype=dtype, device=device)
        self.values = torch.empty(shape, dtype=dtype, device=device)
        # Workspaces reused at every step (sliced to the live rows): fresh multi-MB tensors per op
        # cost the allocator a page fault per 4 KiB, about a tenth of the sampler's time on a CPU.
        block_inner = body.h[0].mlp.c_fc.weight.shape[1]
        work = lambda *size, kind=dtype: torch.empty(*size, dtype=kind, device=device)  # noqa: E731
        self.x, self.qkv = work(rows, self.width, kind=torch.float32), work(rows, 3 * self.width)
        self.scores = work(rows * self.heads * length)
        self.weights = work(rows * self.heads * length)
        self.attended, self.out = work(rows * self.heads, 1, self.width // self.heads), work(rows, self.width)
        self.inner = work(rows, block_inner)
        self.rows, self.length = rows, 0

    def reset(self) -> None:
        """Start a new batch of (at most ``rows``) sequences in the same buffers."""
        self.length = 0

    def step(self, tokens: torch.Tensor, position: int) -> torch.Tensor:
        n, width, heads, dtype = tokens.numel(), self.width, self.heads, self.dtype
        t, hd = position + 1, width // heads
        x = torch.index_select(self.wte, 0, tokens, out=self.x[:n]).add_(self.wpe[position])  # float32
        qkv, out, inner = self.qkv[:n], self.out[:n], self.inner[:n]
        scores = self.scores[:n * heads * t].view(n * heads, 1, t)
        weights = self.weights[:n * heads * t].view(n * heads, 1, t)
        attended = self.attended[:n * heads]
        for i, (g1, b1, w_qkv, b_qkv, w_o, b_o, g2, b2, w_fc, b_fc, w_pr, b_pr) in enumerate(self.blocks):
            h = F.layer_norm(x, (width,), g1, b1, self.eps).to(dtype)
            q, k, v = torch.addmm(b_qkv, h, w_qkv, out=qkv).view(n, 3, heads, hd).unbind(1)
            self.keys[i, :n, :, position] = k
            self.values[i, :n, :, position] = v
            # one query per row: two batched matmuls over (row, head) read the cache in place
            # (SDPA's kernel costs ~8 % more here); q arrives pre-scaled by 1/sqrt(head width)
            torch.bmm(q.reshape(n * heads, 1, hd),
                      self.keys[i, :n, :, :t].reshape(n * heads, t, hd).transpose(1, 2), out=scores)
            if dtype == torch.float32:
                torch.ops.aten._softmax.out(scores, -1, False, out=weights)
            else:  # as autocast does: the softmax in float32
                weights.copy_(scores.softmax(-1, dtype=torch.float32))
            torch.bmm(weights, self.values[i, :n, :, :t].reshape(n * heads, t, hd), out=attended)
            x.add_(torch.addmm(b_o, attended.view(n, width), w_o, out=out))
            h = F.layer_norm(x, (width,), g2, b2, self.eps).to(dtype)
            torch._C._nn.gelu_(torch.addmm(b_fc, h, w_fc, out=inner), approximate=self.gelu)
            x.add_(torch.addmm(b_pr, inner, w_pr, out=out))
        x = F.layer_norm(x, (width,), *self.ln_f, self.eps).to(dtype)
        self.length = t
        return (x @ self.head).float()

    def keep(self, rows: torch.Tensor) -> None:
        """Slot ``i`` takes the row in slot ``rows[i]``; slots from ``len(rows)`` on are freed."""
        moved = (rows != torch.arange(rows.numel(), device=rows.device)).nonzero().squeeze(1)
        if moved.numel():
            t = self.length
            for cache in (self.keys, self.values):
                cache[:, moved, :, :t] = cache[:, rows[moved], :, :t]


def stepper_for(model, rows: int, max_new_tokens: int, dtype: torch.dtype | None = None):
    """The fastest exact stepper for ``model``: :class:`GPT2Stepper` where it applies."""
    if GPT2Stepper.supports(model):
        return GPT2Stepper(model, rows, max_new_tokens, dtype)
    return ModelStepper(model, dtype)
