"""Bring-your-own scorers (oracles.custom): a Python function and an external program as oracles —
values in input order, invalid rows flagged, failures penalised and bounded, the caches keyed by
the oracle's settings, the worked example (examples/oracles, configs/era/external_example.yaml)."""

import csv
import logging
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem
from rdkit.Chem import QED as RDQED

from oracles.base import MoleculeOracle, OracleFailedError
from oracles.config import oracle_from_config
from oracles.custom import ExternalProcess, PythonFunction
from oracles.transforms import Harmonic, NegLog

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "oracles"
MOLS = ["CCO", "not-a-smiles", "c1ccccc1O", "", "OCC", "CC(=O)Oc1ccccc1C(=O)O", "C1CC1N"]


# --- a user's module, written into a directory put on sys.path ---------------------------------

USER_MODULE = '''
import math
from rdkit import Chem

CALLS = []

def score(smiles):
    CALLS.append(smiles)
    if "N" in smiles:
        raise ValueError("no nitrogen, please")
    if smiles == "C1CC1":
        return None
    if smiles == "CCC":
        return float("nan")
    if smiles == "CCCC":
        return "tall"
    return float(Chem.MolFromSmiles(smiles).GetNumHeavyAtoms())

def score_batch(smiles):
    CALLS.append(list(smiles))
    if any("N" in s for s in smiles):
        raise ValueError("no nitrogen, please")
    return [len(s) for s in smiles]

def always_fails(smiles):
    raise RuntimeError("model file missing")
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    folder = tmp_path / "user"
    folder.mkdir()
    name = f"usermod_{abs(hash(str(tmp_path))) % 10**8}"
    (folder / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    yield name, folder / f"{name}.py"
    sys.modules.pop(name, None)


def test_python_function_values_in_order_with_invalid_rows_flagged(user_module, caplog):
    name, _ = user_module
    oracle = PythonFunction(f"{name}:score", direction="maximize")
    inputs = ["OCC", "CCO", "bad", "C1CC1N", "C1CC1", "CCC", "CCCC", "c1ccccc1", "", None, "C(C)O"]
    with caplog.at_level(logging.WARNING, logger="oracles.custom"):
        scores = oracle(inputs)
    values = scores.values["score"]
    expected = [3, 3, None, None, None, None, None, 6, None, None, 3]
    assert scores.valid.tolist() == [e is not None for e in expected]
    assert [None if math.isnan(v) else v for v in values] == expected
    assert scores.energies.tolist() == [-e if e is not None else 10.0 for e in expected]  # maximize: −value
    assert scores.canonical[:3] == ["CCO", "CCO", None]
    calls = sys.modules[name].CALLS
    assert calls == ["CCO", "NC1CC1", "C1CC1", "CCC", "CCCC", "c1ccccc1"]  # canonical, each once, invalid never
    assert oracle.problem_counts == {"the function raised": 1, "no value": 1, "NaN or infinite": 1,
                                     "not a number": 1}
    text = caplog.text
    assert "ValueError: no nitrogen, please for 'NC1CC1'" in text and "'tall' for 'CCCC'" in text
    caplog.clear()
    # warm: nothing is called again, except the sequence whose call raised (a failure is not cached)
    with caplog.at_level(logging.WARNING, logger="oracles.custom"):
        again = oracle(inputs)
    assert calls[6:] == ["NC1CC1"]
    assert again.energies.tolist() == scores.energies.tolist()
    assert caplog.text == ""  # each kind of problem is warned about once
    assert oracle.problem_counts["the function raised"] == 2


def test_python_function_batched_retries_a_failing_batch_one_by_one(user_module):
    name, _ = user_module
    oracle = PythonFunction(f"{name}:score_batch", batched=True, batch_size=3, transform=Harmonic(3.0, 1.0))
    scores = oracle(["CCO", "CCN", "CCCl", "CC", "C"])
    assert sys.modules[name].CALLS == [["CCO", "CCN", "CCCl"], ["CCO"], ["CCN"], ["CCCl"], ["CC", "C"]]
    assert scores.valid.tolist() == [True, False, True, True, True]
    assert scores.values["score_batch"][[0, 2, 3, 4]].tolist() == [3, 4, 2, 1]
    assert scores.energies.tolist() == [0.0, 10.0, 0.5, 0.5, 2.0]
    assert oracle.problem_counts == {"a batched call failed": 1, "the function raised": 1}


def test_python_function_stops_after_repeated_exceptions(user_module):
    name, _ = user_module
    oracle = PythonFunction(f"{name}:always_fails", max_consecutive_failures=5)
    assert oracle(["CCO", "CCN"]).valid.tolist() == [False, False]  # two failures: penalised, run goes on
    with pytest.raises(OracleFailedError, match="failed 5 times in a row.*RuntimeError: model file missing"):
        oracle(["CCC", "CCCC", "CCCCC"])


def test_python_function_in_worker_processes(user_module):
    """n_workers: the oracle travels to forked workers without its callable, which is imported there
    again; a function that fails on everything still stops the run, from a worker too."""
    name, _ = user_module
    mols = ["C" * k + "O" for k in range(1, 201)]
    scores = PythonFunction(f"{name}:score", n_workers=2)(mols)
    assert scores.values["score"].tolist() == [k + 1 for k in range(1, 201)]
    assert sys.modules[name].CALLS == []  # all of it was computed in the workers
    with pytest.raises(OracleFailedError, match="failed 5 times in a row"):
        PythonFunction(f"{name}:always_fails", n_workers=2, max_consecutive_failures=5)(mols)


def test_python_function_configuration_errors(user_module, tmp_path):
    name, path = user_module
    with pytest.raises(ValueError, match="'package.module:callable'"):
        PythonFunction(name)
    with pytest.raises(ModuleNotFoundError, match="PYTHONPATH"):
        PythonFunction("no_such_module_xyz:f")
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        PythonFunction(f"{name}:nope")
    with pytest.raises(TypeError, match="not a callable"):
        PythonFunction(f"{name}:CALLS")
    with pytest.raises(ValueError, match="direction or transform, not both"):
        PythonFunction(f"{name}:score", direction="maximize", transform=NegLog())
    with pytest.raises(ValueError, match="domain must be one of"):
        PythonFunction(f"{name}:score", domain="rna")
    # a file path works without PYTHONPATH
    by_file = PythonFunction(f"{EXAMPLES / 'userscore.py'}:heavy_atoms_times_two")
    assert by_file(["CCO", "x"]).values["heavy_atoms_times_two"][0] == 6.0


def test_domains_let_dna_and_text_through_unchanged():
    dna = PythonFunction("builtins:len", domain="dna")
    scores = dna(["ACGTAC", "ACGU", "acgt", ""])
    assert scores.valid.tolist() == [True, False, False, False] and scores.values["len"][0] == 6
    text = PythonFunction("builtins:len", domain="text")
    assert text(["any string", "two\nlines", ""]).valid.tolist() == [True, False, False]


def test_max_length_is_a_parameter_with_the_old_default():
    long_chain = "C" * 2001
    assert MoleculeOracle.max_length == 2000
    from oracles.rdkit_properties import HeavyAtoms

    assert HeavyAtoms()([long_chain, "C" * 2000]).valid.tolist() == [False, True]
    assert "max_length" not in vars(HeavyAtoms())  # default: recorded settings stay as before
    assert HeavyAtoms(max_length=3000)([long_chain]).values["heavy_atoms"][0] == 2001
    assert HeavyAtoms(max_length=5)(["CCCCC", "CCCCCC"]).valid.tolist() == [True, False]
    assert PythonFunction("builtins:len", domain="text", max_length=3)(["abc", "abcd"]).valid.tolist() == [True, False]
    with pytest.raises(ValueError, match="max_length"):
        HeavyAtoms(max_length=0)


# --- external programs ---------------------------------------------------------------------------

PROGRAM = '''
import os, subprocess, sys, time
mode = sys.argv[1]
lines = sys.stdin.read().splitlines()
with open("calls.log", "a") as log:
    log.write("".join(line + "\\n" for line in lines))
if mode == "exit":
    sys.stderr.write("loading model\\nerror: model.pkl not found\\n")
    sys.exit(3)
if mode == "short":
    lines = lines[:-1]
if mode == "hang" and any("Br" in line for line in lines):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    open("child.pid", "w").write(str(child.pid))
    time.sleep(60)
if mode == "fail_if_flag" and os.path.exists("flag") and any("Br" in line for line in lines):
    sys.exit(1)
for line in lines:
    if mode == "garbage" and "O" in line:
        print("n/a" if "=" in line else "")
    elif line == "CCCC":
        print("nan")
    else:
        print(len(line))
'''


@pytest.fixture
def program(tmp_path):
    folder = tmp_path / "prog"
    folder.mkdir()
    (folder / "score.py").write_text(PROGRAM)

    def make(mode: str, **kwargs) -> ExternalProcess:
        kwargs.setdefault("timeout", 10)
        return ExternalProcess(["python", "score.py", mode], cwd=str(folder), **kwargs)

    make.folder = folder
    make.calls = lambda: (folder / "calls.log").read_text().splitlines() if (folder / "calls.log").exists() else []
    return make


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_external_program_values_in_input_order(program):
    oracle = program("ok", batch_size=2, n_workers=2)
    inputs = ["OCC", "bad", "c1ccccc1O", "CCCC", "", "CC(=O)Oc1ccccc1C(=O)O", "CCO", "CN"]
    scores = oracle(inputs)
    canonical = [Chem.MolToSmiles(Chem.MolFromSmiles(s)) if s and Chem.MolFromSmiles(s) is not None else None
                 for s in inputs]
    expected = [len(c) if c and c != "CCCC" else math.nan for c in canonical]
    np.testing.assert_array_equal(scores.values["score"], expected)
    assert scores.valid.tolist() == [not math.isnan(e) for e in expected]
    assert scores.energies[~scores.valid].tolist() == [10.0] * 3
    assert sorted(program.calls()) == sorted({c for c in canonical if c})  # each distinct molecule once
    assert oracle.failed_batches == 0


def test_external_program_garbage_lines_invalidate_only_their_sequences(program, caplog):
    oracle = program("garbage")
    with caplog.at_level(logging.WARNING, logger="oracles.custom"):
        scores = oracle(["CCO", "CCC", "CC=O", "CCN"])
    assert scores.valid.tolist() == [False, True, False, True]
    assert scores.values["score"][[1, 3]].tolist() == [3, 3]
    assert "not a number" in caplog.text and "'n/a' for 'CC=O'" in caplog.text
    assert oracle.problem_counts == {"no value": 1, "not a number": 1}


@pytest.mark.parametrize("mode, reason", [("exit", "exit status 3"), ("short", "1 output lines for 2 input lines")])
def test_a_failed_batch_gets_the_penalty_and_the_run_goes_on(program, caplog, mode, reason):
    oracle = program(mode, batch_size=2, max_consecutive_failures=3)
    with caplog.at_level(logging.WARNING, logger="oracles.custom"):
        scores = oracle(["CCO", "CCC"])
        again = oracle(["CCO", "CCC"])  # not cached: asked again
    assert scores.valid.tolist() == again.valid.tolist() == [False, False]
    assert scores.energies.tolist() == [10.0, 10.0]
    assert program.calls() == ["CCO", "CCC"] * 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # warned once, with the command and the end of stderr
    assert reason in warnings[0].getMessage() and "score.py" in warnings[0].getMessage()
    if mode == "exit":
        assert "error: model.pkl not found" in warnings[0].getMessage()
    with pytest.raises(OracleFailedError, match=f"failed 3 times in a row.*{reason}"):
        oracle(["CCCC", "CCCCC"])


def test_a_hanging_program_is_killed_at_its_timeout_and_scoring_completes(program):
    oracle = program("hang", batch_size=2, timeout=1.5)  # a healthy batch takes ~0.1 s
    start = time.monotonic()
    scores = oracle(["CCO", "CCC", "CCBr", "CCCCC", "OCC"])
    elapsed = time.monotonic() - start
    assert 1.5 <= elapsed < 10, elapsed
    assert scores.valid.tolist() == [True, True, False, False, True]  # the hanging batch: CCBr, CCCCC
    assert scores.energies.tolist()[2:4] == [10.0, 10.0] and scores.values["score"][4] == 3
    assert oracle.failed_batches == 1
    child = int((program.folder / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:  # the whole process group went, grandchild too
        time.sleep(0.05)
    assert not _alive(child)


def test_command_errors_are_caught_when_the_oracle_is_made(program, tmp_path):
    with pytest.raises(ValueError, match="list of arguments"):
        ExternalProcess("python score.py")
    with pytest.raises(FileNotFoundError, match="not on PATH"):
        ExternalProcess(["no-such-program-xyz"])
    with pytest.raises(FileNotFoundError, match="cwd"):
        ExternalProcess(["python"], cwd=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="depends_on"):
        program("ok", depends_on=["model.pkl"])
    assert program("ok").name == "score"  # named after the script


def test_disk_cache_reuses_scores_and_a_changed_command_or_script_does_not(program, tmp_path):
    db = str(tmp_path / "cache" / "scores.sqlite")
    inputs = ["CCO", "CCC", "bad", "CCCC"]
    first = program("ok", disk_cache=db)(inputs)
    assert len(program.calls()) == 3
    again = program("ok", disk_cache=db)(inputs)  # a new oracle: empty memory cache, same settings
    assert len(program.calls()) == 3  # nothing recomputed
    assert again.energies.tolist() == first.energies.tolist() and again.valid.tolist() == first.valid.tolist()
    program("ok", disk_cache=db, timeout=5, batch_size=7, transform=NegLog())(inputs)  # none changes a value
    assert len(program.calls()) == 3
    program("garbage", disk_cache=db)(inputs)  # another command: scored again
    assert len(program.calls()) == 6
    (program.folder / "score.py").write_text(PROGRAM + "\n# edited\n")  # the script changed: scored again
    program("ok", disk_cache=db)(inputs)
    assert len(program.calls()) == 9
    (program.folder / "model.pkl").write_text("v1")
    program("ok", disk_cache=db, depends_on=["model.pkl"])(inputs)
    program("ok", disk_cache=db, depends_on=["model.pkl"])(inputs)
    assert len(program.calls()) == 12
    (program.folder / "model.pkl").write_text("v2")
    program("ok", disk_cache=db, depends_on=["model.pkl"])(inputs)
    assert len(program.calls()) == 15
    program("ok", disk_cache=db, version="2")(inputs)
    assert len(program.calls()) == 18


def test_disk_cache_invalidated_when_the_function_changes(user_module, tmp_path):
    name, path = user_module
    db = str(tmp_path / "scores.sqlite")
    module = sys.modules.get(name) or __import__(name)
    PythonFunction(f"{name}:score", disk_cache=db)(["CCO", "CCCl"])
    PythonFunction(f"{name}:score", disk_cache=db)(["CCO", "CCCl"])
    assert module.CALLS == ["CCO", "CCCl"]
    PythonFunction(f"{name}:score_batch", batched=True, disk_cache=db)(["CCO", "CCCl"])  # another function
    assert module.CALLS[2:] == [["CCO", "CCCl"]]
    path.write_text(USER_MODULE + "\n# edited\n")  # its source changed
    PythonFunction(f"{name}:score", disk_cache=db)(["CCO", "CCCl"])
    assert module.CALLS[3:] == ["CCO", "CCCl"]


def test_scores_made_before_an_interruption_are_not_recomputed(program, tmp_path):
    db = str(tmp_path / "scores.sqlite")
    inputs = ["CCO", "CCC", "CCCO", "CCCC", "CCBr", "CCCCC"]
    (program.folder / "flag").write_text("")
    oracle = program("fail_if_flag", disk_cache=db, batch_size=2, max_consecutive_failures=1)
    with pytest.raises(OracleFailedError):  # the third batch fails: the run stops there
        oracle(inputs)
    assert program.calls() == inputs
    (program.folder / "flag").unlink()
    resumed = program("fail_if_flag", disk_cache=db, batch_size=2, max_consecutive_failures=1)(inputs)
    assert program.calls()[6:] == ["CCBr", "CCCCC"]  # only what had not been scored
    assert resumed.values["score"][[0, 2, 4]].tolist() == [3, 4, 4] and not resumed.valid[3]


def test_oracles_build_from_config_and_score_through_the_cli(tmp_path, monkeypatch):
    """The issue's bar: ``python -m oracles score`` with a PythonFunction on PYTHONPATH and an
    ExternalProcess printing one number per line; right values in input order, invalid rows flagged."""
    from oracles.__main__ import main

    src = tmp_path / "mols.smi"
    src.write_text("\n".join(MOLS) + "\n")
    for config in ("python_function.yaml", "external_descriptor.yaml"):
        out = tmp_path / f"{config}.csv"
        args = ["score", "--oracle", str(EXAMPLES / config), "--input", str(src), "--output", str(out),
                "--batch-size", "3"]
        if config == "python_function.yaml":  # a fresh process: the module is found through PYTHONPATH only
            subprocess.run([sys.executable, "-m", "oracles", *args], cwd=ROOT, check=True, capture_output=True,
                           env={**os.environ, "PYTHONPATH": str(EXAMPLES)}, timeout=120)
        else:  # the script's path is relative to the repository
            monkeypatch.chdir(ROOT)
            main(args)
        rows = list(csv.DictReader(open(out)))
        assert [r["input"] for r in rows] == MOLS
        mols = [Chem.MolFromSmiles(s) if s else None for s in MOLS]
        assert [r["valid"] for r in rows] == ["0" if m is None else "1" for m in mols]
        for row, mol in zip(rows, mols):
            if mol is None:
                continue
            if config == "python_function.yaml":
                assert float(row["heavy_atoms_times_two"]) == 2 * mol.GetNumHeavyAtoms()
                assert float(row["energy"]) == -2 * mol.GetNumHeavyAtoms()
            else:  # RDKit's QED of the canonical molecule, exactly (the script prints repr)
                qed = RDQED.qed(Chem.MolFromSmiles(Chem.MolToSmiles(mol)))
                assert float(row["descriptor"]) == qed and float(row["energy"]) == pytest.approx(-math.log(qed))
    # in process, through oracle_from_config with the short class path
    monkeypatch.syspath_prepend(str(EXAMPLES))
    oracle = oracle_from_config({"class_path": "oracles.PythonFunction",
                                 "init_args": {"function": "userscore:heavy_atoms_batched", "batched": True}})
    assert oracle(["CCO", "x"]).values["heavy_atoms_batched"].tolist()[0] == 6
    with pytest.raises(ValueError, match="command.*Expected a <class 'list'>"):
        oracle_from_config({"class_path": "oracles.ExternalProcess", "init_args": {"command": "python x.py"}})


def test_worked_example_era_config_trains_with_the_external_oracle(tmp_path, monkeypatch):
    """configs/era/external_example.yaml as shipped (molgpt-moses), 2 steps on 48 samples: the stored
    energies are −log QED from the external program, 4.5 for invalid samples; the cache file is made."""
    from main import cli_main

    monkeypatch.setattr("sys.argv", ["main.py"])
    oracle = "--model.init_args.oracle.init_args"
    cli_main(["fit", "--config", str(ROOT / "configs/era/external_example.yaml"), "--trainer.max_steps=2",
              "--trainer.val_check_interval=2", f"--model.init_args.tokenizer={ROOT / 'checkpoints/molgpt-moses'}",
              "--model.init_args.num_samples=48", "--model.init_args.val_samples=16",
              f"{oracle}.cwd={ROOT}", f"{oracle}.batch_size=16", "--trainer.enable_progress_bar=false"])
    frame = pd.read_parquet(tmp_path / "runs/era/external_example/offline_samples.parquet")
    assert len(frame) == 48 and frame["valid"].mean() > 0.5
    for sequence, energy, valid in zip(frame["sequence"], frame["energy"], frame["valid"]):
        mol = Chem.MolFromSmiles(sequence) if sequence else None
        assert valid == (mol is not None)
        if valid:
            assert energy == pytest.approx(-math.log(RDQED.qed(Chem.MolFromSmiles(Chem.MolToSmiles(mol)))))
        else:
            assert energy == 4.5
    assert (tmp_path / "runs/era/external_example/oracle_cache.sqlite").is_file()
    assert (tmp_path / "runs/era/external_example/pretrained/model.safetensors").is_file()
