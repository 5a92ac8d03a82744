"""benchmarks/sample_quality.py: its --temperature reaches the sampler and --csv collects its rows."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts under test, as tests/test_kinase.py imports them


def script_env(**extra: str) -> dict:
    """This process's environment (conftest's session cache, fp32) with one thread per script."""
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def run(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks/sample_quality.py"), "--model",
                           str(ROOT / "checkpoints/molgpt-chembl"), "--data", "chembl-extended", "--n", "24",
                           "--top-k", "0", "--fcd-reference", "50", *extra],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=script_env())


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


def test_a_csv_with_other_columns_is_refused_and_left_alone(tmp_path):
    other = tmp_path / "kinase.csv"
    other.write_text("run,beta\nera_b50,50\n")
    done = run(tmp_path, "--csv", str(other))
    assert done.returncode == 2 and "name a new file" in done.stderr
    assert other.read_text() == "run,beta\nera_b50,50\n"


def test_frontier_plot_draws_a_csv_and_refuses_another(tmp_path):
    import plot_prior_frontier

    header = "label,weights_sha256,data,n,temperature,seed,fcd_reference,date,top_k,validity,uniqueness,novelty,intdiv1,fcd\n"
    rows = ["a,0123456789abcdef,chembl-extended,10000,1.0,0,all,2026-12-07,none,0.82,1,1,0.88,0.94",
            "a T0.9,0123456789abcdef,chembl-extended,10000,0.9,0,all,2026-12-07,none,0.87,1,1,0.87,1.04",
            "a top-k 5,0123456789abcdef,chembl-extended,10000,1.0,0,all,2026-12-07,5,0.85,1,1,0.87,1.13",
            "b,fedcba9876543210,chembl-extended,10000,1.0,0,all,2026-12-07,none,0.67,1,1,0.88,1.74"]
    (tmp_path / "f.csv").write_text(header + "\n".join(rows) + "\n")
    out = plot_prior_frontier.main(["--csv", str(tmp_path / "f.csv"), "--out", str(tmp_path / "img" / "f.png")])
    assert out.stat().st_size > 10_000
    (tmp_path / "other.csv").write_text("step,validity\n1,0.5\n")
    with pytest.raises(SystemExit, match="not a sample_quality.py --csv file"):
        plot_prior_frontier.main(["--csv", str(tmp_path / "other.csv"), "--out", str(tmp_path / "g.png")])


def test_prior_frontier_runner_appends_then_skips_finished_rows(tmp_path):
    pytest.importorskip("fcd_torch", reason="FCD is the optional fcd extra (installed with dev)")
    table = tmp_path / "frontier.csv"
    env = script_env(PY=sys.executable, FCD_REF="50", N="16", PART="1/1000")  # the first row only
    for _ in range(2):
        done = subprocess.run(["bash", str(ROOT / "benchmarks/prior_frontier.sh"), str(table)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    assert "skip shipped: in" in done.stdout  # the second pass found the row
    rows = list(csv.DictReader(table.open()))
    assert [(r["label"], r["n"], r["temperature"]) for r in rows] == [("shipped", "16", "1.0")]
