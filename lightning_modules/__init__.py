"""LightningModules: what is trained and how (pretraining, alignment, multi-objective fine-tuning,
reward models, directed evolution)."""

from lightning_modules.alignment import OfflineAlignment, OnlineAlignment
from lightning_modules.causal_lm import CausalLMPretraining
from lightning_modules.directed_evolution import DirectedEvolution
from lightning_modules.multi_objective import MultiObjectiveModule
from lightning_modules.reward_model import RewardModelModule

__all__ = ["CausalLMPretraining", "DirectedEvolution", "MultiObjectiveModule", "OfflineAlignment",
           "OnlineAlignment", "RewardModelModule"]
