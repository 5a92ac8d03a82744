"""Energy transforms: raw property value → energy (lower is better), composed in config.

Each transform maps a float array to a float array; a value it cannot map (``-log`` of a
non-positive number, say) becomes NaN, which the oracle turns into its penalty energy.
"""

from __future__ import annotations

import numpy as np


class Transform:
    def __call__(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Identity(Transform):
    """U = x (for properties where lower is already better, e.g. SA score)."""

    def __call__(self, values):
        return np.asarray(values, dtype=np.float64)


class Negate(Transform):
    """U = −x (maximise x)."""

    def __call__(self, values):
        return -np.asarray(values, dtype=np.float64)


class NegLog(Transform):
    """U = −log(x) for x > 0 (the ERA paper's QED energy); x ≤ 0 is unmappable."""

    def __call__(self, values):
        x = np.asarray(values, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x > 0, -np.log(np.where(x > 0, x, 1.0)), np.nan)


class Harmonic(Transform):
    """U = ½((x − μ)/σ)², a target value μ with width σ (the ERA paper's LogP, MR, … targets)."""

    def __init__(self, mu: float, sigma: float = 1.0):
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.mu, self.sigma = mu, sigma

    def __call__(self, values):
        return 0.5 * ((np.asarray(values, dtype=np.float64) - self.mu) / self.sigma) ** 2


class Scale(Transform):
    """U = a·x + b."""

    def __init__(self, a: float = 1.0, b: float = 0.0):
        self.a, self.b = a, b

    def __call__(self, values):
        return self.a * np.asarray(values, dtype=np.float64) + self.b


class Clip(Transform):
    """U = clip(x, low, high)."""

    def __init__(self, low: float | None = None, high: float | None = None):
        self.low, self.high = low, high

    def __call__(self, values):
        return np.clip(np.asarray(values, dtype=np.float64), self.low, self.high)


class Compose(Transform):
    """Apply ``transforms`` in order, e.g. ``[NegLog, Clip(high=4.5)]``."""

    def __init__(self, transforms: list[Transform]):
        self.transforms = list(transforms)

    def __call__(self, values):
        for transform in self.transforms:
            values = transform(values)
        return values
