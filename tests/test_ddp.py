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
