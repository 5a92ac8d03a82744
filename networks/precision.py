"""Which floating-point precision to compute in: bf16 where the hardware has it, fp32 elsewhere.

One setting, ``REWARDFIT_PRECISION`` (``auto`` by default, or ``bf16`` / ``fp32``), decides for
sampling, reference scoring and the Lightning trainer's default (``--trainer.precision`` in a
config or on the command line still wins for training). ``auto`` picks bf16 on GPUs that support
it and on CPUs with native bf16 units (AMX or AVX-512-BF16: Sapphire Rapids and later, Zen 4+),
where the molecular GPT samples and trains 2–2.5× faster; on other CPUs bf16 is emulated and
slower than fp32, so ``auto`` keeps fp32 there.
"""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch

ENV = "REWARDFIT_PRECISION"
CHOICES = ("auto", "bf16", "fp32")


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """True when ``device`` computes bf16 matmuls in hardware."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = (getattr(cpu, "_is_amx_tile_supported", None), getattr(cpu, "_is_avx512_bf16_supported", None))
        return any(check is not None and check() for check in checks)
    return False


def setting() -> str:
    """The ``REWARDFIT_PRECISION`` setting, checked."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise ValueError(f"{ENV}={value!r}: use one of {', '.join(CHOICES)}")
    return value


def compute_dtype(device: str | torch.device = "cpu", precision: str | torch.dtype | None = None) -> torch.dtype:
    """The dtype to compute in on ``device``: ``precision`` if given (``auto``/``bf16``/``fp32`` or
    a dtype), else an active autocast's dtype, else the ``REWARDFIT_PRECISION`` setting."""
    if isinstance(precision, torch.dtype):
        return precision
    device = torch.device(device)
    if precision is None:
        if torch.is_autocast_enabled(device.type):
            return torch.get_autocast_dtype(device.type)
        precision = setting()
    if precision not in CHOICES:
        raise ValueError(f"precision {precision!r}: use one of {', '.join(CHOICES)}")
    if precision == "auto":
        precision = "bf16" if native_bf16(device) else "fp32"
    return torch.bfloat16 if precision == "bf16" else torch.float32


def lightning_precision(device: str | None = None) -> str:
    """The trainer default: ``bf16-mixed`` where :func:`compute_dtype` picks bf16, else ``32-true``."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return "bf16-mixed" if compute_dtype(device, setting()) == torch.bfloat16 else "32-true"


def follow_trainer_precision(trainer) -> str:
    """Make the trainer's precision the setting for sampling and scoring in this process (and the
    processes it starts), so stored reference log-probabilities are computed as the policy's."""
    value = "bf16" if "bf16" in str(trainer.precision) else "fp32"
    os.environ[ENV] = value
    return value


def autocast(device: str | torch.device, dtype: torch.dtype):
    """An autocast context for ``dtype`` on ``device`` (nothing for fp32)."""
    device = torch.device(device)
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)
