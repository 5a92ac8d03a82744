"""Callbacks that act on modules during training."""

from callbacks.alignment_report import AlignmentReport
from callbacks.export import ExportPretrained
from callbacks.merging import WeightMergingCallback
from callbacks.precision import MatmulPrecision
from callbacks.preemption import RequeueOnPreemption
from callbacks.sample_quality import SampleQuality
from callbacks.soup_front import SoupFront, simplex_grid

__all__ = ["AlignmentReport", "ExportPretrained", "MatmulPrecision", "RequeueOnPreemption", "SampleQuality", "SoupFront", "WeightMergingCallback",
           "simplex_grid"]
