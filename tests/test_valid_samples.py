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


def test_length_matching_follows_the_reference():
    import length_matched

    samples = ["C" * n for n in range(5, 30)] * 40  # flat over 5..29 characters
    reference = ["C" * 25] * 300 + ["C" * 7] * 100  # 3/4 in the 25–29 bin, 1/4 in 5–9
    drawn = length_matched.length_matched(samples, reference, n=800, bin_width=5, cap=10, seed=1)
    lengths = [len(s) for s in drawn]
    assert len(drawn) == 800 and set(drawn) <= set(samples)
    assert sum(25 <= n < 30 for n in lengths) == 600 and sum(5 <= n < 10 for n in lengths) == 200
    # the cap: a bin gives at most cap × its size, so here 2 × 200 in the 25–29 bin
    capped = length_matched.length_matched(samples, reference, n=800, bin_width=5, cap=2, seed=1)
    assert sum(25 <= len(s) < 30 for s in capped) == 400
    with pytest.raises(ValueError):
        length_matched.length_matched([], reference, n=10)


def test_length_matching_refuses_to_overwrite_its_input(tmp_path):
    import length_matched

    src = tmp_path / "a.smi"
    src.write_text("CCO\nCCN\n")
    with pytest.raises(SystemExit):
        length_matched.main(["--samples", str(src), "--reference", str(src), "--out", str(src)])
    assert src.read_text() == "CCO\nCCN\n"
