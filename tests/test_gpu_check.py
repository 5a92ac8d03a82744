"""The first-GPU check script runs end to end on its CPU path and writes a report with numbers."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_path_writes_its_report(tmp_path):
    env = {**os.environ, "SMOKE": "1", "OUT": str(tmp_path), "PY": sys.executable, "PY_SET": "1"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = (tmp_path / "gpu_check.md").read_text()
    assert "## Sampling" in report and "## Pretraining" in report and "## One online ERA round" in report
    rates = re.findall(r"^\| rewardfit sample \| fp32 \| 32 \| ([\d,]+) \|", report, re.M)
    assert rates and int(rates[0].replace(",", "")) > 0
    tokens = re.findall(r"^\| fp32 \| 8 \| ([\d,]+) \|", report, re.M)
    assert tokens and int(tokens[0].replace(",", "")) > 0
    shares = re.findall(r"^\| configs/era/qed_online_cpu\.yaml \| (\d+) \| ([\d.]+) \| (\d+)%", report, re.M)
    assert shares and int(shares[0][0]) == 2 and float(shares[0][1]) > 0
