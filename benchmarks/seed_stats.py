"""Statistics over seeds shared by the study runners (``mo_protocol.py``, ``kinase_era.py``): the
mean ± standard error of a metric, and the tests on paired per-seed differences."""

from __future__ import annotations

import numpy as np
import pandas as pd


def mean_se(values: pd.Series) -> tuple[float, float]:
    """Mean and standard error (sd with ddof 1 over √n) of the non-missing values; NaN s.e. under
    two values, NaN both when there are none."""
    values = values.dropna().astype(float)
    if len(values) == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def paired(diff: np.ndarray) -> dict:
    """Summary of paired differences (this method − the other, one per seed): mean, wins, and the
    two-sided paired t-test and Wilcoxon signed-rank p-values (NaN with fewer than 2 pairs, or
    when every difference is 0)."""
    from scipy import stats

    out = {"mean_diff": float(diff.mean()) if len(diff) else float("nan"), "wins": int((diff > 0).sum()),
           "t_p": float("nan"), "wilcoxon_p": float("nan")}
    if len(diff) >= 2 and np.any(diff != 0):
        out["t_p"] = float(stats.ttest_1samp(diff, 0.0).pvalue)  # = the paired t-test on the two columns
        out["wilcoxon_p"] = float(stats.wilcoxon(diff).pvalue)
    return out
