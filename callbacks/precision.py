"""Numerical settings that a trainer preset cannot express as Trainer arguments."""

from __future__ import annotations

import lightning as L
import torch


class MatmulPrecision(L.Callback):
    """Sets ``torch.set_float32_matmul_precision`` at setup: ``high`` enables TF32 on Ampere and
    newer GPUs (A100, H100) for the fp32 matmuls that bf16-mixed leaves in fp32."""

    def __init__(self, precision: str = "high"):
        if precision not in ("highest", "high", "medium"):
            raise ValueError(f"precision must be highest, high or medium, got {precision!r}")
        self.precision = precision

    def setup(self, trainer, pl_module, stage):
        torch.set_float32_matmul_precision(self.precision)
