"""benchmarks/valid_samples.py (the self-distillation set of molgpt-chembl): it keeps exactly the
valid, finished samples, counts the rest, writes with the user's umask and refuses to write into
the model's own folder."""

import os
import sys
from pathlib import Path

import pytest
from rdkit import Chem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import valid_samples  # noqa: E402


def test_keeps_the_valid_finished_samples(tmp_path):
    out = tmp_path / "sub" / "valid.smi"
    old = os.umask(0o027)
    try:
        counts = valid_samples.main(["--model", "molgpt-chembl", "--n", "96", "--batch-size", "40",
                                     "--seed", "3", "--out", str(out)])
    finally:
        os.umask(old)
    lines = out.read_text().splitlines()
    assert counts["drawn"] == 96 == counts["kept"] + counts["invalid"] + counts["unfinished"]
    assert len(lines) == counts["kept"] > 0
    assert all(Chem.MolFromSmiles(s) is not None for s in lines)
    assert counts["invalid"] > 0  # the shipped prior is ≈ 82 % valid: some are dropped
    assert out.stat().st_mode & 0o777 == 0o640
    again = tmp_path / "again.smi"  # seeded: the same samples again
    valid_samples.main(["--model", "molgpt-chembl", "--n", "96", "--batch-size", "40", "--seed", "3",
                        "--out", str(again)])
    assert again.read_text() == out.read_text()


def test_refuses_to_write_into_the_model_folder(tmp_path):
    from networks.architectures import resolve_checkpoint

    with pytest.raises(SystemExit):
        valid_samples.main(["--model", "molgpt-chembl", "--n", "4",
                            "--out", str(resolve_checkpoint("molgpt-chembl") / "valid.smi")])
