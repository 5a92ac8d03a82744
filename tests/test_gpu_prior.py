"""The GPU prior script (benchmarks/gpu_prior.sh) runs both arms end to end on its CPU path."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_prior_cpu_path_trains_both_arms_and_reports_validity(tmp_path):
    env = {**os.environ, "SMOKE": "1", "OUT": str(tmp_path), "RUNS_ROOT": str(tmp_path / "runs"),
           "PY": sys.executable, "PY_SET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_prior.sh")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    rows = [json.loads(line) for line in report.splitlines() if line.startswith("{")]
    assert len(rows) == 2 and all(0 <= r["validity"] <= 1 and r["n"] == 40 for r in rows)
    for arm in ("canonical", "randomized"):
        with tarfile.open(tmp_path / f"{arm}.tar") as tar:
            assert "pretrained/model.safetensors" in tar.getnames()
    # the randomized arm really trained on randomized strings (6 molecules × 10 forms)
    assert "60 records" in (tmp_path / "randomized.log").read_text()
