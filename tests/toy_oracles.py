"""Oracles for tests: rewards any tiny random model can improve on, with no RDKit."""

import numpy as np
import torch

from oracles.base import Oracle, Scores


class Length(Oracle):
    """Energy = length / 10: the model must learn to stop early."""

    name = "length"

    def __call__(self, sequences):
        values = np.array([len(s) for s in sequences], dtype=np.float64)
        return Scores(torch.from_numpy(values / 10), torch.ones(len(values), dtype=torch.bool),
                      {"length": values}, list(sequences))


class CharCount(Oracle):
    """Energy = −(count of ``char``) / 5: the model must learn to emit one token more often."""

    def __init__(self, char: str):
        super().__init__(name=f"count_{char}")
        self.char = char

    def __call__(self, sequences):
        values = np.array([s.count(self.char) for s in sequences], dtype=np.float64)
        return Scores(torch.from_numpy(-values / 5), torch.ones(len(values), dtype=torch.bool),
                      {self.name: values}, list(sequences))
