"""benchmarks/sample_quality.py: its --temperature reaches the sampler and --csv collects its rows."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks/sample_quality.py"), "--model",
                           str(ROOT / "checkpoints/molgpt-chembl"), "--data", "chembl-extended", "--n", "24",
                           "--top-k", "0", "--fcd-reference", "50", *extra],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "REWARDFIT_CACHE": str(tmp_path / "cache"),
                               "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})


def test_temperature_and_csv_rows(tmp_path):
    pytest.importorskip("fcd_torch", reason="FCD is the optional fcd extra (installed with dev)")
    table = tmp_path / "results" / "quality.csv"
    for temperature in ("0.5", "1.5"):
        done = run(tmp_path, "--temperature", temperature, "--csv", str(table), "--label", f"T{temperature}")
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"temperature {temperature}" in done.stdout
    rows = list(csv.DictReader(table.open()))
    assert [r["label"] for r in rows] == ["T0.5", "T1.5"]  # appended, one header
    assert all(len(r["weights_sha256"]) == 16 and r["top_k"] == "none" and r["n"] == "24" for r in rows)
    cold, hot = (float(r["validity"]) for r in rows)
    # a colder sampler stays on the model's likely (valid) strings; at T = 1.5 most break
    assert cold > hot
    assert float(rows[0]["fcd"]) > 0


def test_bad_temperature_is_refused(tmp_path):
    done = run(tmp_path, "--temperature", "0")
    assert done.returncode == 2 and "--temperature must be > 0" in done.stderr
