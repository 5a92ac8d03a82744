"""Frozen copies of a network — a reference policy, an evaluation soup — kept in eval mode.

Why a module of its own: the alignment and multi-objective modules both hold such copies, and
Lightning warns at the start of every fit that it "found N module(s) in eval mode", which here
is by design and would teach users to ignore the warning when it matters. :func:`expect_frozen`
silences it for exactly the frozen copies' module count, so any *other* module left in eval
mode (a real mistake) is still reported.
"""

from __future__ import annotations

import copy
import re
import warnings

from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy in eval mode with no trainable parameters."""
    return copy.deepcopy(module).eval().requires_grad_(False)


def expect_frozen(owner: nn.Module, *frozen: nn.Module) -> None:
    """Call from ``on_fit_start``. If the only modules of ``owner`` in eval mode are those of the
    ``frozen`` copies, Lightning's eval-mode warning for that exact count is ignored until
    :func:`end_expect_frozen` (call it from ``on_train_start``: Lightning checks just before)."""
    in_eval = sum(not m.training for m in owner.modules())
    expected = sum(1 for copy_ in frozen for _ in copy_.modules())
    if in_eval == expected and all(not m.training for copy_ in frozen for m in copy_.modules()):
        scope = warnings.catch_warnings()  # restores the process's filters on exit
        scope.__enter__()
        warnings.filterwarnings(
            "ignore", message=re.escape(f"Found {expected} module(s) in eval mode at the start of training"),
            category=PossibleUserWarning)
        owner._frozen_warning_scope = scope


def end_expect_frozen(owner: nn.Module) -> None:
    """Drop the filter of :func:`expect_frozen`, so later fits in the process are checked afresh."""
    scope = owner.__dict__.pop("_frozen_warning_scope", None)
    if scope is not None:
        scope.__exit__(None, None, None)
