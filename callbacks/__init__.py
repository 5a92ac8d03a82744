"""Callbacks that act on modules during training."""

from callbacks.export import ExportPretrained
from callbacks.precision import MatmulPrecision
from callbacks.sample_quality import SampleQuality

__all__ = ["ExportPretrained", "MatmulPrecision", "SampleQuality"]
