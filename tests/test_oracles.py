import itertools
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import QED as RDQED
from rdkit.Chem import Crippen, Descriptors, Lipinski, rdFingerprintGenerator, rdMolDescriptors

from datamodules.sources import moses_path, read_records
from oracles import rdkit_properties as P
from oracles.base import MoleculeOracle
from oracles.combine import EnergyVector, WeightedSum
from oracles.config import oracle_from_config
from oracles.rdkit_properties import _load_sascorer
from oracles.transforms import Clip, Compose, Harmonic, Negate, NegLog

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def moses_1000():
    return list(itertools.islice(read_records(moses_path("test"), "SMILES"), 1000))


REFERENCE = {
    P.QED: RDQED.qed, P.LogP: Crippen.MolLogP, P.MolarRefractivity: Crippen.MolMR,
    P.TPSA: rdMolDescriptors.CalcTPSA, P.FractionSP3: rdMolDescriptors.CalcFractionCSP3,
    P.HeavyAtoms: lambda m: m.GetNumHeavyAtoms(), P.RingCount: rdMolDescriptors.CalcNumRings,
    P.AromaticRings: rdMolDescriptors.CalcNumAromaticRings, P.HBondDonors: Lipinski.NumHDonors,
    P.HBondAcceptors: Lipinski.NumHAcceptors, P.RotatableBonds: Lipinski.NumRotatableBonds,
    P.MolWeight: Descriptors.MolWt,
}


@pytest.mark.parametrize("cls", list(REFERENCE), ids=lambda c: c.__name__)
def test_properties_equal_rdkit_exactly(cls, moses_1000):
    scores = cls()(moses_1000)
    assert scores.valid.all()
    expected = [float(REFERENCE[cls](Chem.MolFromSmiles(Chem.MolToSmiles(Chem.MolFromSmiles(s)))))
                for s in moses_1000]
    assert scores.values[cls.name].tolist() == expected
    assert scores.energies.tolist() == expected  # identity transform by default


def test_sa_score_equals_contrib_sascorer(moses_1000):
    sascorer = _load_sascorer()
    mols = moses_1000
    expected = [sascorer.calculateScore(Chem.MolFromSmiles(Chem.MolToSmiles(Chem.MolFromSmiles(s)))) for s in mols]
    assert P.SAScore()(mols).values["sa"].tolist() == expected


def test_tanimoto_and_substructure():
    target = "c1ccccc1O"
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    expected = DataStructs.TanimotoSimilarity(gen.GetFingerprint(Chem.MolFromSmiles("c1ccccc1N")),
                                              gen.GetFingerprint(Chem.MolFromSmiles(target)))
    sim = P.TanimotoSimilarity(target)(["Oc1ccccc1", "c1ccccc1N"]).values["tanimoto"]
    assert sim.tolist() == [1.0, expected]
    present = P.Substructure("c1ccccc1")(["c1ccccc1C", "CCCC"]).values["substructure"]
    absent = P.Substructure("c1ccccc1", present=False)(["c1ccccc1C", "CCCC"]).values["substructure"]
    assert present.tolist() == [1.0, 0.0] and absent.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="does not parse"):
        P.TanimotoSimilarity("C1CC")


class NaNProperty(MoleculeOracle):
    name = "nan"

    def compute(self, mol):
        return float("nan") if mol.GetNumAtoms() > 2 else 1.0


def test_bad_inputs_get_the_penalty_and_are_flagged():
    oracle = P.QED(transform=NegLog(), penalty=4.5)
    batch = ["CCO", "not a smiles", "", "C" * 5000, None, "C1CC", "c1ccccc1"]
    scores = oracle(batch)
    assert scores.valid.tolist() == [True, False, False, False, False, False, True]
    assert scores.energies[~scores.valid].eq(4.5).all()
    assert np.isfinite(scores.energies.numpy()).all()
    assert scores.energies[0].item() == pytest.approx(-math.log(RDQED.qed(Chem.MolFromSmiles("CCO"))))
    nan = NaNProperty(penalty=7.0)(["CCCC", "CC"])
    assert nan.valid.tolist() == [False, True] and nan.energies.tolist() == [7.0, 1.0]
    with pytest.raises(TypeError, match="list of sequences"):
        oracle("CCO")
    with pytest.raises(ValueError, match="finite"):
        P.QED(penalty=float("nan"))


def test_duplicates_are_scored_once_and_cached():
    calls = []

    class Counting(MoleculeOracle):
        name = "count"

        def compute(self, mol):
            calls.append(Chem.MolToSmiles(mol))
            return mol.GetNumAtoms()

    oracle = Counting()
    scores = oracle(["CCO", "OCC", "C(O)C", "CCN"])
    assert scores.values["count"].tolist() == [3, 3, 3, 3] and len(calls) == 2
    oracle(["CCO", "CCN"])
    assert len(calls) == 2  # served from the cache
    clone = pickle.loads(pickle.dumps(P.TanimotoSimilarity("CCO", penalty=2.0)))
    assert clone(["OCC"]).values["tanimoto"].tolist() == [1.0] and clone.penalty == 2.0


def test_transforms():
    x = np.array([0.5, 1.0, 0.0, -1.0])
    assert np.allclose(NegLog()(x)[:2], [math.log(2), 0.0]) and np.isnan(NegLog()(x)[2:]).all()
    assert Harmonic(2.0, 0.5)(np.array([3.0]))[0] == pytest.approx(2.0)
    assert Negate()(np.array([2.0]))[0] == -2.0
    assert Compose([NegLog(), Clip(high=1.0)])(np.array([0.01]))[0] == 1.0
    with pytest.raises(ValueError):
        Harmonic(0.0, 0.0)


def test_weighted_sum_and_vector():
    qed, logp = P.QED(transform=NegLog(), penalty=4.5), P.LogP(transform=Harmonic(2.0, 1.0))
    total = WeightedSum([qed, logp], [1.0, 0.5])
    batch = ["CCO", "c1ccccc1O", "bad"]
    s_total, s_qed, s_logp = total(batch), qed(batch), logp(batch)
    assert s_total.energies[:2].tolist() == pytest.approx((s_qed.energies + 0.5 * s_logp.energies)[:2].tolist())
    assert s_total.energies[2].item() == 4.5 + 0.5 * 10.0 and not s_total.valid[2]
    vector = EnergyVector([qed, logp])(batch)
    assert vector.energies.shape == (3, 2) and vector.valid.tolist() == [True, True, False]
    with pytest.raises(ValueError, match="weights"):
        WeightedSum([qed], [1.0, 2.0])


ORACLE_CONFIGS = sorted((ROOT / "configs" / "oracles").glob("*.yaml"))


@pytest.mark.parametrize("path", ORACLE_CONFIGS, ids=lambda p: p.stem)
def test_oracle_config_snippets_build_and_score(path):
    oracle = oracle_from_config(path)
    good = getattr(oracle, "wild_type", "CC(=O)Oc1ccccc1C(=O)O")  # protein landscapes score variants
    scores = oracle([good, "invalid"])
    assert scores.valid.tolist() == [True, False]
    assert np.isfinite(scores.energies.numpy()).all()


def test_oracle_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("class_path: oracles.rdkit_properties.QED\ninit_args: {penalty: 4.5, transfrom: 1}\n")
    with pytest.raises(Exception, match="transfrom"):
        oracle_from_config(bad)
    with pytest.raises(FileNotFoundError):
        oracle_from_config(tmp_path / "missing.yaml")


def test_tdc_forests_equal_reference_predictions():
    import pandas as pd

    from oracles.tdc_forest import GSK3B, JNK3

    ref = pd.read_csv(ROOT / "tests/data/tdc_reference_predictions.csv")
    for cls, column in ((JNK3, "jnk3"), (GSK3B, "gsk3b")):
        scores = cls()(list(ref["smiles"]))
        assert scores.valid.all()
        assert np.abs(scores.values[column] - ref[column].to_numpy()).max() <= 1e-9
        assert np.allclose(scores.energies.numpy(), -ref[column].to_numpy())
    bad = JNK3()(["not-a-smiles", "", None])
    assert not bad.valid.any() and bad.energies.tolist() == [0.0, 0.0, 0.0]
    clone = pickle.loads(pickle.dumps(JNK3()))
    assert clone(["CCO"]).valid.all()


def test_forest_conversion_refuses_unknown_pickles(tmp_path):
    from oracles.convert_tdc_forest import convert

    fake = tmp_path / "model.pkl"
    fake.write_bytes(b"not TDC's forest")
    with pytest.raises(ValueError, match="refusing to unpickle"):
        convert(fake, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()
    from oracles.tdc_forest import Forest

    with pytest.raises(FileNotFoundError, match="converted forest not found"):
        Forest(tmp_path / "missing.npz")


def test_parallel_scoring_equals_serial(moses_1000):
    serial = P.QED(transform=NegLog())(moses_1000 + ["bad", None])
    oracle = P.QED(transform=NegLog(), n_workers=2)
    try:
        parallel = oracle(moses_1000 + ["bad", None])
    finally:
        oracle.close()
    assert parallel.energies.tolist() == serial.energies.tolist()
    assert parallel.canonical == serial.canonical


def test_warm_cache_skips_rdkit_entirely(moses_1000, monkeypatch):
    oracle = P.SAScore()
    cold = oracle(moses_1000[:200])

    def no_rdkit(*args):
        raise AssertionError("RDKit called on a warm batch")

    monkeypatch.setattr("oracles.base.canonical_smiles", no_rdkit)
    monkeypatch.setattr(P.SAScore, "compute", no_rdkit)
    warm = oracle(moses_1000[:200])
    assert warm.energies.tolist() == cold.energies.tolist()


def test_score_command_keeps_every_row_in_order(tmp_path):
    import csv as _csv

    from oracles.__main__ import main

    src = tmp_path / "mols.csv"
    src.write_text("name,smiles\na,CCO\nb,not-a-smiles\nc,\nd,OCC\n")
    out = tmp_path / "out" / "scores.csv"
    main(["score", "--oracle", str(ROOT / "configs/oracles/multi_property.yaml"), "--input", str(src),
          "--column", "smiles", "--output", str(out), "--batch-size", "3"])
    rows = list(_csv.DictReader(open(out)))
    assert [r["input"] for r in rows] == ["CCO", "not-a-smiles", "", "OCC"]
    assert [r["valid"] for r in rows] == ["1", "0", "0", "1"]
    assert rows[0]["canonical"] == rows[3]["canonical"] == "CCO" and rows[0]["energy"] == rows[3]["energy"]
    assert float(rows[1]["energy"]) == 14.5 and "qed" in rows[0] and "logp" in rows[0]
    with pytest.raises(SystemExit, match="no column 'SMILES'"):
        main(["score", "--oracle", str(ROOT / "configs/oracles/qed.yaml"), "--input", str(src),
              "--column", "SMILES", "--output", str(tmp_path / "x.csv")])
    assert not (tmp_path / "x.csv").exists()


# ---------------------------------------------------------------- protein fitness tables


def test_gb1_lookup_matches_the_csv():
    import gzip

    import pandas as pd

    from oracles.fitness_table import GB1_SITES, LANDSCAPES, FitnessTable

    oracle = FitnessTable("GB1", "GB1.fasta", sites=GB1_SITES)
    frame = pd.read_csv(gzip.open(LANDSCAPES / "GB1.csv.gz"), encoding="utf-8-sig").sample(500, random_state=0)
    scores = oracle(list(frame["Variants"]))
    assert scores.values["fitness"].tolist() == frame["Fitness"].tolist()
    wt = oracle(["VDGV"])
    assert wt.values["fitness"][0] == 1.0 and wt.energies[0].item() == 0.0
    assert max(oracle.fitness.values()) == pytest.approx(8.76, abs=0.01)
    # the same variant as a full sequence; a change off the sites makes it unmeasured
    full = oracle.full_sequence("ADGV")
    off_site = "A" + full[1:] if full[0] != "A" else "C" + full[1:]
    res = oracle([full, off_site, "VD*V", "VDGX", "VDG", "", None])
    assert res.valid.tolist() == [True, False, False, False, False, False, False]
    assert res.energies[1:].eq(10.0).all()
    assert res.energies[0].item() == pytest.approx(-math.log(oracle.fitness["ADGV"]))


def test_trpb_sites_come_from_the_table():
    from oracles.fitness_table import FitnessTable

    oracle = FitnessTable("TrpB3D", "TrpB.fasta")
    assert oracle.sites == [117, 118, 119]
    nonpositive = [v for v, f in oracle.fitness.items() if f <= 0][:1]
    if nonpositive:  # fitness <= 0 has no -log: penalty, flagged
        assert not oracle(nonpositive).valid[0]


def test_landscape_configuration_errors(tmp_path):
    from oracles.fitness_table import FitnessTable, LandscapeError

    with pytest.raises(LandscapeError, match="outside the parent"):
        FitnessTable("GB1", "GB1.fasta", sites=[39, 40, 41, 540])
    with pytest.raises(LandscapeError, match="do not match the table's wild type"):
        FitnessTable("TrpB3A", "M" * 390)
    with pytest.raises(LandscapeError, match="differ from the table"):
        FitnessTable("TrpB3A", "TrpB.fasta", sites=[1, 2, 3])
    table = tmp_path / "nofit.csv"
    table.write_text("Variants,score\nAA,1\n")
    with pytest.raises(LandscapeError, match="no fitness column"):
        FitnessTable(str(table), "MKAA", sites=[3, 4])
    with pytest.raises(FileNotFoundError):
        FitnessTable(str(tmp_path / "missing.csv"), "MKAA", sites=[3, 4])


def test_tdc_adapter_wiring_with_a_stand_in_module(monkeypatch):
    import sys
    import types

    from oracles.tdc_adapter import TDCOracle

    calls = []

    class StandIn:
        def __init__(self, name):
            self.name = name

        def __call__(self, smiles):
            calls.append(list(smiles))
            return [0.1 * len(s) if s != "CCN" else float("nan") for s in smiles]

    monkeypatch.setitem(sys.modules, "tdc", types.SimpleNamespace(Oracle=StandIn))
    oracle = TDCOracle("DRD2")
    scores = oracle(["CCO", "bad", "CCN", None])
    assert calls == [["CCO", "CCN"]]  # only valid molecules reach TDC, canonicalised
    assert scores.valid.tolist() == [True, False, False, False]
    assert scores.energies.tolist() == pytest.approx([-0.3, 0.0, 0.0, 0.0])
    monkeypatch.setitem(sys.modules, "tdc", None)  # not installed
    with pytest.raises(ImportError, match="pip install 'rewardfit\\[tdc\\]'"):
        TDCOracle("DRD2")


def test_disk_cache_survives_a_new_process_and_separates_configs(tmp_path, monkeypatch):
    db = str(tmp_path / "cache.sqlite")
    first = P.TanimotoSimilarity("CCO", disk_cache=db)(["CCO", "CCN", "bad"])
    other = P.TanimotoSimilarity("c1ccccc1", disk_cache=db)(["CCO"])  # another target: another key
    assert other.values["tanimoto"][0] != 1.0

    def no_rdkit(*args):
        raise AssertionError("computed although the disk cache has it")

    monkeypatch.setattr(P.TanimotoSimilarity, "compute", no_rdkit)
    again = P.TanimotoSimilarity("CCO", disk_cache=db)(["CCO", "CCN", "bad"])  # fresh memory cache
    assert again.energies.tolist() == first.energies.tolist()
    assert again.valid.tolist() == [True, True, False]


def test_fingerprint_classifier_learns_a_planted_rule(tmp_path, chembl_smiles):
    from oracles.fingerprint_classifier import FingerprintClassifier, train_classifier

    rows = ["smiles,active"] + [f"{s},{int('S' in s)}" for s in chembl_smiles[:1500]]
    data = tmp_path / "labels.csv"
    data.write_text("\n".join(rows) + "\n")
    card = train_classifier(str(data), "active", str(tmp_path / "clf"), epochs=4)
    assert card["test_auroc"] > 0.9 and card["sizes"]["test"] == 150
    oracle = FingerprintClassifier(str(tmp_path / "clf"))
    scores = oracle(["CCSCC", "CCOCC", "bad"])
    p = scores.values["classifier"]
    assert p[0] > p[1] and scores.valid.tolist() == [True, True, False]
    with pytest.raises(ValueError, match="no column 'activity'"):
        train_classifier(str(data), "activity", str(tmp_path / "x"))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        FingerprintClassifier(str(tmp_path / "nothing"))


SHARED_PICKLE = ROOT.parent / "shared/data/jnk3_gsk3b/tdc_models/jnk3_current.pkl"


@pytest.mark.skipif(not SHARED_PICKLE.is_file(), reason="TDC's pickle is only in the developers' shared data")
def test_pickle_is_converted_on_first_use_to_the_shipped_arrays(tmp_path, monkeypatch):
    from oracles.convert_tdc_forest import convert
    from oracles.tdc_forest import ASSETS, JNK3

    out = convert(SHARED_PICKLE, tmp_path / "jnk3.npz")  # no scikit-learn needed
    with np.load(out) as new, np.load(ASSETS / "tdc_jnk3.npz") as shipped:
        assert all(np.array_equal(new[k], shipped[k]) for k in shipped.files)
    monkeypatch.setenv("REWARDFIT_CACHE", str(tmp_path / "cache"))
    smiles = ["CCO", "c1ccc2[nH]ccc2c1", "CN1CCN(Cc2ccc(NC(=O)c3ccc(C)c(Nc4nccc(-c5cccnc5)n4)c3)cc2)CC1"]
    assert JNK3(path=str(SHARED_PICKLE))(smiles).energies.tolist() == JNK3()(smiles).energies.tolist()


def test_restricted_unpickler_refuses_code(tmp_path):
    import os

    from oracles.convert_tdc_forest import convert

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        convert(path, tmp_path / "out.npz", allow_unknown=True)
    assert not (tmp_path / "pwned").exists()


def test_batch_larger_than_the_cache_is_scored_correctly():
    small = P.HeavyAtoms(cache_size=2)
    batch = ["C", "CC", "CCC", "CCCC", "CCCCC", "C", "bad"]
    scores = small(batch)
    assert scores.values["heavy_atoms"][:6].tolist() == [1, 2, 3, 4, 5, 1]
    assert scores.valid.tolist() == [True] * 6 + [False]
    assert small(batch).values["heavy_atoms"][:6].tolist() == [1, 2, 3, 4, 5, 1]
    forest = __import__("oracles.tdc_forest", fromlist=["JNK3"]).JNK3()
    assert forest.compute_batch([None]).tolist() != [0.0] and np.isnan(forest.compute_batch([None])[0])
