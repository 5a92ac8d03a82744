"""LightningModules: what is trained and how (pretraining, alignment, reward models)."""

from lightning_modules.alignment import OfflineAlignment, OnlineAlignment
from lightning_modules.causal_lm import CausalLMPretraining

__all__ = ["CausalLMPretraining", "OfflineAlignment", "OnlineAlignment"]
