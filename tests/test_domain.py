"""Input applicability domain of learned reward models (issue 27, item 0): nearest-neighbour
Tanimoto similarity to the training inputs, a threshold calibrated on held-out inputs, and its
uses in ``LearnedOracle`` (report / penalty) and in the multi-objective evaluation."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from lightning_modules.reward_model import FingerprintMLP, RewardModelModule, save_reward_model
from oracles.domain import FILE, InputDomain, fingerprints, nearest_similarity
from oracles.learned import LearnedOracle

FAR = ["FC(F)(F)C(F)(F)C(F)(F)C(F)(F)F", "[Si](C)(C)(C)C", "CC(C)(C)[Se]C(C)(C)C"]  # unlike drug-like molecules


def test_nearest_similarity_is_tanimoto_to_the_nearest(chembl_smiles):
    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    ref, queries = list(chembl_smiles[:50]), list(chembl_smiles[50:60]) + FAR
    fps_ref = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in ref]
    expected = [max(DataStructs.BulkTanimotoSimilarity(gen.GetFingerprint(Chem.MolFromSmiles(s)), fps_ref)) for s in queries]
    packed_ref, _ = fingerprints(ref, "smiles")
    packed_q, valid = fingerprints(queries, "smiles")
    assert valid.all()
    np.testing.assert_allclose(nearest_similarity(packed_q, packed_ref, chunk=3), expected, atol=1e-12)


def test_threshold_keeps_the_stated_share_of_held_out_inputs(chembl_smiles):
    domain = InputDomain.build(chembl_smiles[:300], chembl_smiles[300:400], "smiles", n_reference=1000, coverage=0.9)
    assert len(domain.reference) == 300 and 0.0 < domain.threshold < 1.0
    held = domain.similarity(chembl_smiles[300:400])
    assert abs((held >= domain.threshold).mean() - 0.9) <= 0.02
    sims = domain.similarity(list(chembl_smiles[:5]) + FAR + ["not a smiles", None])
    assert (sims[:5] == 1.0).all() and np.isnan(sims[-2:]).all()
    assert "Si" not in domain.ranges["elements"] and domain.out_of_range(FAR[1:]).all()
    outside = domain.outside(FAR + ["not a smiles"])
    assert outside[:3].all() and not outside[3]  # invalid inputs are the oracle's business, not "outside"


def test_dna_domain_reads_6mers():
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 60)) for _ in range(40)]
    domain = InputDomain.build(seqs[:30], seqs[30:], "dna", coverage=1.0)
    sims = domain.similarity([seqs[0], seqs[0][:59] + "A", "A" * 60, "ACGN" * 15])
    assert sims[0] == 1.0 and sims[1] > 0.9 and sims[2] < 0.05 and np.isnan(sims[3])
    assert not domain.out_of_range(["ACGN" * 15]).any()  # unreadable: not judged by its length
    with pytest.raises(ValueError, match="kind"):
        fingerprints(["ACGT"], "protein")
    with pytest.raises(ValueError, match=r"\[m, 512\]"):
        InputDomain(np.zeros((3, 256), np.uint8), "dna", 0.5)
    with pytest.raises(ValueError, match="ranges"):
        InputDomain(domain.reference, "dna", 0.5, ranges={"elements": []})


def test_save_load_honours_umask_and_corrupt_files_are_named(tmp_path, chembl_smiles):
    domain = InputDomain.build(chembl_smiles[:60], chembl_smiles[60:80], "smiles")
    old = os.umask(0o027)
    try:
        path = domain.save(tmp_path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640
    back = InputDomain.load(tmp_path)
    assert back.threshold == domain.threshold and np.array_equal(back.reference, domain.reference)
    assert back.ranges == domain.ranges and back.ranges["size"][0] >= 1
    assert InputDomain.load(tmp_path / "nowhere") is None
    path.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="not a readable input domain"):
        InputDomain.load(tmp_path)


@pytest.fixture
def model_dir(tmp_path, chembl_smiles):
    torch.manual_seed(0)
    model = RewardModelModule(tasks=["a"], encoder=FingerprintMLP(n_bits=64, hidden=[8]))
    model.set_target_statistics(np.array([1.0]), np.array([2.0]))
    directory = save_reward_model(model.eval(), tmp_path / "model")
    InputDomain.build(chembl_smiles[:200], chembl_smiles[200:260], "smiles").save(directory)
    return directory


def test_learned_oracle_reports_or_penalises_inputs_outside(model_dir, chembl_smiles):
    batch = list(chembl_smiles[:4]) + FAR
    report = LearnedOracle(str(model_dir))
    off = LearnedOracle(str(model_dir), domain_check="off")
    penalty = LearnedOracle(str(model_dir), domain_check="penalty", penalty=7.0)
    assert report.outside_domain(batch).tolist() == [0.0] * 4 + [1.0] * 3 and off.outside_domain(batch) is None
    assert np.isnan(report.outside_domain(["not a smiles", ""])).all()  # unreadable: neither inside nor outside
    plain, penalised = report(batch), penalty(batch)
    assert torch.equal(plain.energies, off(batch).energies) and plain.valid.all()
    assert penalised.valid.tolist() == [True] * 4 + [False] * 3
    assert torch.equal(penalised.energies[:4], plain.energies[:4]) and (penalised.energies[4:] == 7.0).all()
    (model_dir / FILE).unlink()
    with pytest.raises(ValueError, match="needs domain.npz"):
        LearnedOracle(str(model_dir), domain_check="penalty")
    assert LearnedOracle(str(model_dir)).outside_domain(batch) is None
    with pytest.raises(ValueError, match="domain_check"):
        LearnedOracle(str(model_dir), domain_check="warn")



def test_domain_verdicts_are_computed_once_per_distinct_input(model_dir, chembl_smiles):
    """With ``domain_check: penalty`` an evaluation asks for the verdict twice (the oracle's call,
    then ``samples/outside_domain``): each distinct string is judged once, within ``cache_size``."""
    oracle = LearnedOracle(str(model_dir), domain_check="penalty", cache_size=5)
    judged = []
    share = oracle.input_domain.outside_share
    oracle.input_domain.outside_share = lambda xs: judged.extend(xs) or share(xs)
    batch = list(chembl_smiles[:3]) + FAR[:1] + list(chembl_smiles[:1])  # one repeat
    first = oracle(batch).valid.tolist()
    assert oracle.outside_domain(batch).tolist() == [0.0] * 3 + [1.0, 0.0]
    assert first == [True] * 3 + [False, True] and sorted(judged) == sorted(set(batch))
    oracle.outside_domain(list(chembl_smiles[3:6]))  # 3 new strings: the cache keeps the 5 most recent
    assert len(oracle._outside_cache) == 5 and len(judged) == 7
    del oracle.input_domain.outside_share  # the counting wrapper does not pickle
    assert pickle.loads(pickle.dumps(oracle))._outside_cache == {}

def test_shipped_reward_qm9_domain_keeps_qm9_and_rejects_drug_like():
    """reward-qm9's domain: QM9 molecules (≤ 9 heavy atoms) inside, drug-sized molecules outside."""
    oracle = LearnedOracle("reward-qm9")
    assert oracle.input_domain is not None and oracle.input_domain.coverage == 0.99
    qm9 = ["CCO", "OC1COC1=O", "N#CC1CC1", "CC1=CC2CC1C2", "CC1(O)CC1C#N"]
    drugs = ["CC(=O)Oc1ccccc1C(=O)O", "CN1CCC[C@H]1c1cccnc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
             "COc1ccc2[nH]cc(CCNC(C)=O)c2c1"]
    outside = oracle.outside_domain(qm9 + drugs)
    assert (outside[:5] == 0.0).all() and (outside[5:] == 1.0).all()
    # aspirin passes the similarity threshold: the heavy-atom range is what rejects it
    assert oracle.input_domain.similarity(drugs[:1])[0] >= oracle.input_domain.threshold
    assert oracle.input_domain.out_of_range(drugs[:1])[0] and oracle.input_domain.ranges["size"][1] == 9


def test_build_command_calibrates_on_the_models_own_test_split(tmp_path, chembl_smiles, capsys):
    import json
    import sys
    from pathlib import Path

    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import reward_domain

    table = tmp_path / "qm9.csv"
    pd.DataFrame({"SMILES": chembl_smiles[:200], "Polarizability_bohr3": 1.0, "HOMO_LUMO_gap_au": 0.2,
                  "InternalEnergy_0K_au": -40.0}).to_csv(table, index=False)
    torch.manual_seed(0)
    model = RewardModelModule(tasks=["alpha", "gap", "u0"], encoder=FingerprintMLP(n_bits=64, hidden=[8]))
    model.set_target_statistics(np.zeros(3), np.ones(3))
    directory = save_reward_model(model.eval(), tmp_path / "model")
    root = Path(__file__).resolve().parents[1]
    reward_domain.main(["build", "--checkpoint", str(directory), "--config", str(root / "configs/reward_models/qm9_tiny.yaml"),
                        "--data-path", str(table), "--coverage", "0.9"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    domain = InputDomain.load(directory)
    assert domain is not None and printed["threshold"] == round(domain.threshold, 4)
    assert 0.85 <= printed["test_inside"] <= 1.0 and len(domain.reference) <= 200
    with pytest.raises(SystemExit, match="no domain.npz"):
        (directory / FILE).unlink()
        reward_domain.main(["measure", "--checkpoint", str(directory), "--policy", "molgpt-qm9", "--n", "4"])
