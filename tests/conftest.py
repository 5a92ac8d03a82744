import gzip
import itertools
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests compare numbers at fp32 tolerances on every machine: a CPU with native bf16 would otherwise
# pick bf16 (networks/precision.py). The bf16 paths are tested by asking for them explicitly.
os.environ.setdefault("REWARDFIT_PRECISION", "fp32")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session tokenises into its own cache, never the user's."""
    monkeypatch.setenv("REWARDFIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path, monkeypatch):
    """Runs without a logger write into the working directory (config.yaml, plots, CSVs);
    each test gets its own, so nothing lands in the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def chembl_smiles() -> list[str]:
    from datamodules.sources import chembl_path

    with gzip.open(chembl_path("train"), "rt") as handle:
        return [line.strip() for line in itertools.islice(handle, 3000)]


@pytest.fixture
def smiles_file(tmp_path, chembl_smiles):
    def make(n: int = 1000, name: str = "mols.smi", extra: list[str] = ()) -> Path:
        path = tmp_path / name
        path.write_text("\n".join(list(chembl_smiles[:n]) + list(extra)) + "\n")
        return path

    return make
