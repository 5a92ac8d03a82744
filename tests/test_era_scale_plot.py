"""benchmarks/era_scale_plot.py reads era_sweep outputs (results.csv, the offline Parquet, DPO
metrics) and draws one figure; a renamed column in either would break the docs' figure silently."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import era_scale_plot  # noqa: E402


def _sweep(root: Path, name: str, n: int, qed: float, dpo: bool = False) -> Path:
    out = root / name
    out.mkdir()
    pd.DataFrame({"energy": [0.5] * n}).to_parquet(out / "offline_samples.parquet")
    rows = [{"method": "reference", "name": "reference", "property/qed/mean": 0.81, "samples/validity": 0.93,
             "samples/intdiv1": 0.851, "energy/mean": 0.5},
            {"method": "DPO" if dpo else "ERA", "name": "dpo_b0.5" if dpo else "era_b200_g9",
             "property/qed/mean": qed, "samples/validity": 0.91, "samples/intdiv1": 0.853, "energy/mean": 0.45}]
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    if dpo:
        (out / "dpo_b0.5/csv/version_0").mkdir(parents=True)
        pd.DataFrame({"step": [149, 160, 299], "property/qed/mean": [0.85, None, 0.86],
                      "samples/intdiv1": [0.846, None, 0.844]}).to_csv(out / "dpo_b0.5/csv/version_0/metrics.csv", index=False)
    return out


def test_scale_figure_from_sweeps(tmp_path):
    small, large = _sweep(tmp_path, "small", 10, 0.83), _sweep(tmp_path, "large", 40, 0.86)
    dpo = _sweep(tmp_path, "dpo", 10, 0.86, dpo=True)
    table = era_scale_plot.sweep_table(large)
    assert table.num_samples.tolist() == [40, 40] and era_scale_plot.property_column(table) == "property/qed/mean"
    assert len(era_scale_plot.trajectory(dpo / "dpo_b0.5", "property/qed/mean")) == 2  # validations only
    png = era_scale_plot.main(["--scale", str(large), str(small), "--dpo", str(dpo), "--out", str(tmp_path / "f.png")])
    assert png.stat().st_size > 10_000
