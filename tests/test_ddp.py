"""Two-process DDP on CPU (gloo): every record once per epoch across ranks, identical parameters."""

import json
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_rank_ddp_pretraining(tmp_path, chembl_smiles):
    data = tmp_path / "mols.smi"
    data.write_text("\n".join(chembl_smiles[:101]) + "\n")  # odd: ranks get 51 and 50 records
    run = subprocess.run([sys.executable, str(WORKER), str(data), str(tmp_path)], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = [json.loads((tmp_path / f"seen_{r}.json").read_text()) for r in (0, 1)]
    assert sorted(seen[0] + seen[1]) == list(range(101))
    params = [torch.load(tmp_path / f"params_{r}.pt") for r in (0, 1)]
    assert all(torch.equal(params[0][k], params[1][k]) for k in params[0])


ALIGNMENT_WORKER = Path(__file__).with_name("ddp_alignment_worker.py")


def _run_alignment_worker(*args, timeout=600):
    run = subprocess.run([sys.executable, str(ALIGNMENT_WORKER), *map(str, args)], capture_output=True,
                         text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]


def _same_on_both_ranks(directory, mode):
    params = [torch.load(directory / f"{mode}_params_{r}.pt") for r in (0, 1)]
    assert params[0].keys() == params[1].keys() and len(params[0]) > 0
    assert all(torch.equal(params[0][k], params[1][k]) for k in params[0])


def test_two_rank_ddp_irs_merges_identically(tmp_path):
    _run_alignment_worker("irs", tmp_path)  # 5 steps, merges at steps 2 and 4, 2 of 3 experts active
    _same_on_both_ranks(tmp_path, "irs")


def test_two_rank_ddp_online_era(tmp_path):
    _run_alignment_worker("era", tmp_path)
    _same_on_both_ranks(tmp_path, "era")


def test_ddp_validation_metrics_equal_one_process(tmp_path, chembl_smiles):
    data = tmp_path / "val.smi"
    data.write_text("\n".join(chembl_smiles[:64]) + "\n")  # 8 batches of 8: 4 per rank, no padding
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    _run_alignment_worker("validate", one, data, 1)
    _run_alignment_worker("validate", two, data, 2)
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert m1.keys() == m2.keys() and "val/loss" in m1
    for key in m1:
        assert abs(m1[key] - m2[key]) < 1e-5 * max(1.0, abs(m1[key])), (key, m1[key], m2[key])
