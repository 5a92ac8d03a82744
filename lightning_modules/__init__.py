"""LightningModules: what is trained and how (pretraining, alignment, reward models)."""

from lightning_modules.alignment import OfflineAlignment, OnlineAlignment
from lightning_modules.causal_lm import CausalLMPretraining
from lightning_modules.reward_model import RewardModelModule  # noqa: F401
from lightning_modules.directed_evolution import DirectedEvolution  # noqa: F401
from lightning_modules.multi_objective import MultiObjectiveModule

__all__ = ["CausalLMPretraining", "MultiObjectiveModule", "OfflineAlignment", "OnlineAlignment"]
