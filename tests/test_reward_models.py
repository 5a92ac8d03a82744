"""Learned reward models: tables → trained predictor → saved directory → oracle.

All data are synthetic and made here (the real QM9/MPRA tables are not shipped); the shipped DHS
set is read only through small synthetic copies of its layout.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from datamodules.sources import DataFileError
from datamodules.tables import DHSCellTypeDataModule, MPRAActivityDataModule, QM9DataModule, TableDataModule
from lightning_modules.reward_model import (
    DNAConvNet,
    FingerprintMLP,
    RewardModelModule,
    load_reward_model,
    save_reward_model,
)
from main import cli_main
from oracles.learned import LearnedOracle

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["pytest"])


def _r2(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    return 1 - ((pred - true) ** 2).sum(0) / ((true - true.mean(0)) ** 2).sum(0)


def _qm9_like(smiles: list[str]) -> pd.DataFrame:
    """Targets that are exact functions of the molecule, in QM9's column names and scales."""
    from rdkit import Chem

    mols = [Chem.MolFromSmiles(s) for s in smiles]
    heavy = np.array([m.GetNumHeavyAtoms() for m in mols], dtype=float)
    rings = np.array([m.GetRingInfo().NumRings() for m in mols], dtype=float)
    hetero = np.array([sum(a.GetSymbol() not in ("C", "H") for a in m.GetAtoms()) for m in mols], dtype=float)
    return pd.DataFrame({"SMILES": smiles, "Polarizability_bohr3": 30 + 2.5 * heavy - 1.5 * hetero,
                         "HOMO_LUMO_gap_au": 0.3 - 0.01 * rings + 0.004 * hetero,
                         "InternalEnergy_0K_au": -40.0 * heavy - 15.0 * hetero})


@pytest.fixture(scope="module")
def trained_qm9(tmp_path_factory, chembl_smiles):
    """A tiny model fitted through ``main.py fit`` with configs/reward_models/qm9_tiny.yaml."""
    tmp = tmp_path_factory.mktemp("qm9")
    frame = _qm9_like(chembl_smiles[:64])
    path = tmp / "qm9_tiny.csv"
    frame.to_csv(path, index=False)
    cli = cli_main(["fit", "--config", str(ROOT / "configs/reward_models/qm9_tiny.yaml"), "--data.path", str(path),
                    "--data.fractions", "[1.0, 0.0, 0.0]", "--trainer.max_epochs", "150",
                    "--trainer.default_root_dir", str(tmp)])
    return cli.model, frame, tmp, cli


def test_tiny_model_overfits_a_64_row_csv(trained_qm9):
    model, frame, _, cli = trained_qm9
    assert len(cli.datamodule.data["train"][0]) == 64
    pred = model.predict(frame["SMILES"].tolist())
    true = frame[["Polarizability_bohr3", "HOMO_LUMO_gap_au", "InternalEnergy_0K_au"]].to_numpy()
    assert pred.shape == (64, 3)
    r2 = _r2(pred, true)
    assert (r2 > 0.99).all(), r2
    # predictions are in source units, not standardised ones
    assert abs(pred[:, 2].mean() - true[:, 2].mean()) < 0.05 * true[:, 2].std()
    np.testing.assert_allclose(model.target_mean.numpy(), true.mean(0), rtol=1e-6)


def test_standardisation_survives_save_and_load_bit_exactly(trained_qm9, tmp_path):
    model, frame, _, cli = trained_qm9
    smiles = frame["SMILES"].tolist()
    before = model.predict(smiles)
    assert model.target_std.dtype == torch.float64 and bool(model.stats_set)
    loaded = load_reward_model(save_reward_model(model, tmp_path / "dir"))
    ckpt = tmp_path / "model.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    from_ckpt = load_reward_model(ckpt)
    for other in (loaded, from_ckpt):
        assert torch.equal(other.target_mean, model.target_mean)
        assert torch.equal(other.target_std, model.target_std)
        assert np.array_equal(other.predict(smiles), before)
    assert loaded.hparams.encoder == model.hparams.encoder


def test_oracle_gives_the_modules_own_predictions(trained_qm9, tmp_path):
    model, frame, _, _ = trained_qm9
    directory = save_reward_model(model, tmp_path / "reward")
    smiles = frame["SMILES"].tolist()[:20] + ["not-a-smiles", "", "C1CC"]
    # the same batches as the oracle's (float32 matmuls of other shapes round differently)
    expected = model.predict(smiles, batch_size=8)
    oracle = LearnedOracle(str(directory), tasks=["alpha", "gap", "u0"],
                           directions={"gap": "minimize"}, penalty=7.0, batch_size=8)
    scores = oracle(smiles)
    assert scores.energies.shape == (23, 3) and scores.energies.dtype == torch.float64
    assert scores.valid.tolist() == [True] * 20 + [False] * 3
    np.testing.assert_array_equal(scores.values["learned/alpha"][:20], expected[:20, 0])
    np.testing.assert_array_equal(scores.energies[:20, 0].numpy(), -expected[:20, 0])  # maximise alpha
    np.testing.assert_array_equal(scores.energies[:20, 1].numpy(), expected[:20, 1])  # minimise the gap
    assert (scores.energies[20:] == 7.0).all()
    assert np.isnan(scores.values["learned/u0"][20:]).all()
    again = oracle(smiles[::-1])  # cached answers are the same numbers
    np.testing.assert_array_equal(again.energies.numpy()[::-1], scores.energies.numpy())
    from oracles.transforms import Harmonic

    single = LearnedOracle(str(directory), tasks="u0", transforms={"u0": Harmonic(mu=-400.0, sigma=10.0)})
    one = single(smiles[:5])
    assert one.energies.shape == (5,)
    u0 = model.predict(smiles[:5], batch_size=single.batch_size)[:, 2]  # one batch of 5, as the oracle's
    np.testing.assert_allclose(one.energies.numpy(), 0.5 * ((u0 + 400.0) / 10.0) ** 2)
    with pytest.raises(ValueError, match="unknown task"):
        LearnedOracle(str(directory), tasks=["homo"])
    with pytest.raises(ValueError, match="directions"):
        LearnedOracle(str(directory), directions={"gap": "lower"})


MOTIF = "GGATCCTTAG"


def _rc(s: str) -> str:
    return s.translate(str.maketrans("ACGT", "TGCA"))[::-1]


def _mpra_table(n: int, length: int, seed: int) -> pd.DataFrame:
    """Random DNA with 0–3 planted copies of MOTIF (either strand); activity = copies (+ noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    chroms = [str(c) for c in range(1, 23)] + ["X"]
    for _ in range(n):
        seq = list(rng.choice(list("ACGT"), length))
        copies = int(rng.integers(0, 4))
        for slot in rng.choice(length // 20, copies, replace=False):
            motif = MOTIF if rng.random() < 0.5 else _rc(MOTIF)
            seq[slot * 20: slot * 20 + len(motif)] = motif
        seq = "".join(seq)
        count = sum(seq.count(m) for m in (MOTIF, _rc(MOTIF)))
        rows.append({"chr": f"chr{rng.choice(chroms)}", "sequence": seq,
                     "HepG2_log2FC": count + 0.1 * rng.normal(), "K562_log2FC": -0.5 * count + 0.1 * rng.normal()})
    return pd.DataFrame(rows)


def test_mpra_planted_motif_is_learned(tmp_path):
    import lightning as L

    path = tmp_path / "mpra.tsv"
    _mpra_table(1500, 100, 0).to_csv(path, sep="\t", index=False)
    L.seed_everything(0)
    data = MPRAActivityDataModule(str(path), targets=["HepG2_log2FC", "K562_log2FC"], sequence_length=100,
                                  batch_size=64)
    model = RewardModelModule(tasks=["HepG2_log2FC", "K562_log2FC"], tokenizer="dna", sequence_length=100,
                              encoder=DNAConvNet([64], [11], dropout=0.0), lr=1e-2, warmup_steps=0,
                              reverse_complement_average=True)
    trainer = L.Trainer(max_epochs=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    sizes = {k: len(v[0]) for k, v in data.data.items()}
    assert sizes["test"] and sizes["val"] and sum(sizes.values()) == 1500
    test_seqs, test_y = data.data["test"]
    assert data.split_column == "chr"
    metrics = trainer.test(model, datamodule=data)[0]
    pred = model.predict(test_seqs)
    for j, task in enumerate(["HepG2_log2FC", "K562_log2FC"]):
        r = np.corrcoef(pred[:, j], test_y[:, j])[0, 1]
        assert r >= 0.9, (task, r)
        assert metrics[f"test/{task}/pearson"] == pytest.approx(r, abs=0.02)
    # held-out chromosomes really are held out
    frame = pd.read_csv(path, sep="\t")
    test_chroms = set(frame.set_index("sequence").loc[test_seqs, "chr"])
    assert test_chroms <= {"chr7", "chr13"}


def test_table_errors_are_clear_or_dropped_and_counted(tmp_path):
    good = pd.DataFrame({"smiles": ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "CCC", "CCCl"],
                         "y": ["1.0", "2.5", "3", "4", "5", "6"]})
    path = tmp_path / "t.csv"

    def module(frame, **kwargs):
        frame.to_csv(path, index=False)
        dm = TableDataModule(str(path), sequence_column="smiles", targets=["y"], tokenizer="smiles",
                             fractions=(0.5, 0.25, 0.25), **kwargs)
        dm.setup()
        return dm

    good.to_csv(path, index=False)
    with pytest.raises(DataFileError, match=r"no column \['activity'\]; columns are \['smiles', 'y'\]"):
        TableDataModule(str(path), sequence_column="smiles", targets=["activity"]).setup()
    bad = good.copy()
    bad.loc[2, "y"] = "high"
    with pytest.raises(DataFileError, match=r"column 'y' has 1 non-numeric value.*line 4: 'high'"):
        module(bad)
    nan = good.copy()
    nan.loc[[1, 4], "y"] = ["", "NaN"]
    with pytest.raises(DataFileError, match=r"2 row\(s\) with empty, NaN or infinite targets \(lines \[3, 6\]\)"):
        module(nan)
    smiles = good.copy()
    smiles.loc[0, "smiles"] = "C1CC"
    with pytest.raises(DataFileError, match="invalid smiles sequence"):
        module(smiles)
    mixed = good.copy()
    mixed.loc[2, "y"] = "high"
    mixed.loc[4, "y"] = "nan"
    mixed.loc[0, "smiles"] = "not a molecule"
    dm = module(mixed, drop_invalid=True)
    assert dm.n_dropped == {"non_numeric_target": 1, "missing_target": 1, "invalid_sequence": 1}
    kept = sorted(s for part in dm.data.values() for s in part[0])
    assert kept == sorted(["c1ccccc1", "CCN", "CCCl"])
    assert dm.data["train"][1].dtype == np.float32


def test_invalid_sequences_get_the_penalty(tmp_path):
    model = RewardModelModule(tasks=["HepG2", "K562"], task="multilabel", tokenizer="dna", sequence_length=20,
                              encoder=DNAConvNet([8], [5]))
    directory = save_reward_model(model, tmp_path / "dna")
    oracle = LearnedOracle(str(directory), penalty=3.5)
    good = "ACGT" * 5
    batch = [good, "ACGN" * 5, "ACGT" * 4, "acgt" * 5, "", None, good + "A"]
    scores = oracle(batch)
    assert scores.valid.tolist() == [True] + [False] * 6
    assert (scores.energies[1:] == 3.5).all() and scores.energies.shape == (7, 2)
    p = model.predict([good])
    assert ((p > 0) & (p < 1)).all()  # probabilities
    np.testing.assert_array_equal(scores.energies[0].numpy(), -p[0])
    assert scores.canonical[0] == good and scores.canonical[1] is None
    with pytest.raises(TypeError):
        oracle("ACGT")


def test_dhs_and_qm9_layouts_and_splits(tmp_path):
    rng = np.random.default_rng(0)
    columns = DHSCellTypeDataModule.COLUMNS
    rows = []
    for i in range(40):
        tag = list(columns)[i % 4]
        rows.append({"sequence": "".join(rng.choice(list("ACGT"), 200)), "TAG": columns[tag],
                     "data_label": ["training", "training", "validation", "test"][i % 4 if i < 20 else 0],
                     **{col: int(t == tag or rng.random() < 0.2) for t, col in columns.items()}})
    path = tmp_path / "dhs.tsv.gz"
    with gzip.open(path, "wt") as handle:
        pd.DataFrame(rows).to_csv(handle, sep="\t", index=False)
    multiclass = DHSCellTypeDataModule(str(path))
    multiclass.setup()
    assert {k: len(v[0]) for k, v in multiclass.data.items()} == {"train": 30, "val": 5, "test": 5}
    assert multiclass.data["val"][1].tolist() == [2] * 5  # K562 is class 2 in the default order
    multilabel = DHSCellTypeDataModule(str(path), task="multilabel", targets=["HepG2", "K562"])
    multilabel.setup()
    assert multilabel.data["train"][1].shape == (30, 2)
    assert set(np.unique(multilabel.data["train"][1])) <= {0.0, 1.0}
    two = DHSCellTypeDataModule(str(path), targets=["HepG2", "GM12878"])
    two.setup()
    assert sum(len(v[0]) for v in two.data.values()) == 20  # only the sites selected for those two

    smiles = ["c1ccccc1C", "c1ccccc1CC", "c1ccccc1O", "C1CCCCC1", "C1CCCCC1N", "CCO", "CCCO", "CC(C)O",
              "c1ccncc1", "c1ccncc1C", "CCN", "CCCN", "O=C1CCCC1", "O=C1CCCC1C", "CC", "CCC", "c1ccoc1",
              "c1ccoc1C", "C1CC1", "C1CC1C"]
    qm9 = tmp_path / "qm9.csv"
    _qm9_like(smiles).to_csv(qm9, index=False)
    scaffold = QM9DataModule(str(qm9), split="scaffold", fractions=(0.6, 0.2, 0.2))
    scaffold.setup()
    from rdkit.Chem.Scaffolds import MurckoScaffold

    def scaffolds(part):
        return {MurckoScaffold.MurckoScaffoldSmiles(smiles=s) for s in scaffold.data[part][0]}

    assert not scaffolds("train") & scaffolds("test") and not scaffolds("train") & scaffolds("val")
    random_a = QM9DataModule(str(qm9), seed=1)
    random_a.setup()
    random_b = QM9DataModule(str(qm9), seed=1)
    random_b.setup()
    assert random_a.data["test"][0] == random_b.data["test"][0]
    assert {k: len(v[0]) for k, v in random_a.data.items()} == {"train": 16, "val": 2, "test": 2}
    with pytest.raises(FileNotFoundError, match="QM9 table not found"):
        QM9DataModule(str(tmp_path / "missing.csv")).setup()


def test_model_and_data_must_agree(tmp_path):
    with pytest.raises(ValueError, match="reads smiles sequences"):
        RewardModelModule(tasks=["a"], tokenizer="dna", encoder=FingerprintMLP())
    with pytest.raises(ValueError, match="does not fit"):
        RewardModelModule(tasks=["a"], loss="bce")
    model = RewardModelModule(tasks=["a"], target_mean=[1.0], target_std=[2.0])
    assert model.target_std.item() == 2.0 and bool(model.stats_set)


def test_pooled_language_model_encoder_round_trips(tmp_path):
    from lightning_modules.reward_model import PooledLM

    torch.manual_seed(0)
    gpt = {"class_path": "networks.architectures.GPT",
           "init_args": {"n_layer": 1, "n_embd": 16, "n_head": 2, "n_inner": 32, "n_positions": 64}}
    model = RewardModelModule(tasks=["a", "b"], tokenizer="dna", encoder=PooledLM(gpt, pool="mean"),
                              target_mean=[1.0, -2.0], target_std=[0.5, 3.0])
    seqs = ["ACGTACGT", "AC", "GGGGCCCCAAAA", "ACGN"]
    pred = model.predict(seqs)
    assert np.isfinite(pred[:3]).all() and np.isnan(pred[3]).all()
    # padding does not leak into the pooled vector: a sequence scores the same alone or in a batch
    np.testing.assert_allclose(model.predict(["AC"])[0], pred[1], rtol=1e-5, atol=1e-6)
    loaded = load_reward_model(save_reward_model(model, tmp_path / "lm"))
    assert np.array_equal(loaded.predict(seqs), pred, equal_nan=True)


def test_linear_composition_path_starts_at_the_least_squares_fit(tmp_path, chembl_smiles):
    """An additive property (here: exactly -38·C - 0.6·H - 55·N - 75·O) is fitted before any step."""
    import lightning as L
    from rdkit import Chem

    smiles = chembl_smiles[:200]
    mols = [Chem.AddHs(Chem.MolFromSmiles(s)) for s in smiles]
    count = lambda m, e: sum(a.GetSymbol() == e for a in m.GetAtoms())  # noqa: E731
    u0 = [-38 * count(m, "C") - 0.6 * count(m, "H") - 55 * count(m, "N") - 75 * count(m, "O") for m in mols]
    path = tmp_path / "u0.csv"
    pd.DataFrame({"SMILES": smiles, "u0": u0}).to_csv(path, index=False)
    r2 = {}
    for linear in (True, False):
        data = QM9DataModule(str(path), targets=["u0"], fractions=(1.0, 0.0, 0.0), batch_size=200)
        model = RewardModelModule(tasks=["u0"], lr=1e-9, warmup_steps=0,
                                  encoder=FingerprintMLP(n_bits=256, hidden=[32], linear_composition=linear))
        L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, limit_val_batches=0,
                  enable_progress_bar=False, enable_model_summary=False).fit(model, datamodule=data)
        pred = model.predict(smiles)[:, 0]
        r2[linear] = _r2(pred[:, None], np.array(u0)[:, None])[0]
        if linear:  # the MLP adds a small random part on top of the exact linear fit
            assert np.abs(pred - np.array(u0)).mean() < 0.05 * np.std(u0)
    assert r2[True] > 0.998 and r2[False] < 0.5, r2


def test_mpra_tiny_config_fits_through_the_cli_and_exports(tmp_path):
    path = tmp_path / "mpra.tsv"
    table = _mpra_table(200, 200, 1)
    table["SKNSH_log2FC"] = table["HepG2_log2FC"] * 0.3
    table.to_csv(path, sep="\t", index=False)
    extra = tmp_path / "export.yaml"
    extra.write_text("trainer:\n  callbacks:\n    - class_path: lightning_modules.reward_model.ExportRewardModel\n"
                     f"      init_args: {{dirpath: {tmp_path / 'export'}}}\n")
    cli = cli_main(["fit", "--config", str(ROOT / "configs/reward_models/mpra_tiny.yaml"), "--config", str(extra),
                    "--data.path", str(path), "--trainer.max_epochs", "1", "--data.split", "random"])
    seqs = table["sequence"].tolist()[:10]
    exported = load_reward_model(tmp_path / "export")
    assert np.array_equal(exported.predict(seqs), cli.model.predict(seqs))
    assert exported.hparams.tasks == ["HepG2_log2FC", "K562_log2FC", "SKNSH_log2FC"]


def test_shipped_checkpoints_serve_as_oracles():
    """The shipped models load by name, predict sensible values and agree with their oracle configs."""
    from oracles.config import oracle_from_config

    qm9 = load_reward_model("reward-qm9")
    assert qm9.hparams.tasks == ["alpha", "gap", "u0"]
    pred = qm9.predict(["C", "c1ccccc1", "not a smiles"])
    # QM9 values (Index 1, methane; 214, benzene): alpha 13.21 / 57.28 bohr³, U0 -40.47893 / -232.164586 Ha
    assert abs(pred[0, 2] + 40.47893) < 0.2 and abs(pred[1, 2] + 232.164586) < 0.2
    assert abs(pred[1, 0] - 57.28) < 3 and np.isnan(pred[2]).all()
    vector = oracle_from_config(ROOT / "configs/oracles/qm9_multi.yaml")(["C", "c1ccccc1"])
    np.testing.assert_array_equal(vector.energies.numpy(), pred[:2] * np.array([-1, 1, 1]))
    dhs = load_reward_model("reward-dna-dhs")
    example = dhs.card["example_input"]
    probs = dhs.predict([example, example[:150]])
    assert probs[0].sum() == pytest.approx(1.0) and np.isnan(probs[1]).all()
    hepg2 = oracle_from_config(ROOT / "configs/oracles/dhs_hepg2.yaml")([example])
    assert hepg2.energies.tolist() == [-probs[0, dhs.hparams.tasks.index("HepG2")]]


def test_out_of_domain_inputs_are_flagged_once(caplog):
    """reward-qm9 returns numbers for any molecule; for a MOSES-sized drug-like one they are far
    outside QM9's targets (not an extrapolation, nonsense), which the oracle says once, while QM9
    molecules pass silently."""
    import logging

    from oracles.learned import LearnedOracle

    oracle = LearnedOracle("reward-qm9", tasks=["alpha", "gap", "u0"])
    with caplog.at_level(logging.WARNING, logger="oracles.learned"):
        oracle(["C", "c1ccccc1", "OCC(O)CO"])
        assert not caplog.records
        drug_like = ["CC(=O)Nc1ccc(OCC(=O)N2CCN(c3ccc(F)cc3)CC2)cc1", "COc1ccc2[nH]cc(CCNC(=O)c3cc(Cl)ccc3O)c2c1"]
        values = oracle.predict_values(drug_like)
        mean, std = oracle.model.target_mean.numpy(), oracle.model.target_std.numpy()
        assert (np.abs((values - mean) / std) > 10).any()  # the premise
        assert oracle.far_from_training(values).any(1).all()
        assert len(caplog.records) == 1 and "outside the reward model's domain" in caplog.text
        oracle(["CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC(=O)O"])
        assert len(caplog.records) == 1  # once per oracle
        assert oracle(drug_like).valid.all()  # warn: the values are still used


def test_out_of_domain_penalty_and_standardised_energies():
    """``out_of_domain: penalty`` scores far-out predictions as invalid; ``standardize`` gives
    energies in training standard deviations with the task's direction."""
    from oracles.learned import LearnedOracle

    drug_like = "CC(=O)Nc1ccc(OCC(=O)N2CCN(c3ccc(F)cc3)CC2)cc1"
    kwargs = dict(tasks=["alpha", "gap", "u0"], directions={"alpha": "maximize", "gap": "minimize", "u0": "minimize"})
    strict = LearnedOracle("reward-qm9", out_of_domain="penalty", penalty=3.0, standardize=True, **kwargs)
    scores = strict(["c1ccccc1", drug_like])
    assert scores.valid.tolist() == [True, False]
    assert scores.energies[1].tolist() == [3.0, 3.0, 3.0]
    raw = LearnedOracle("reward-qm9", **kwargs)
    values = raw.predict_values(["c1ccccc1", drug_like])[0]  # the same batch: the same float32 numerics
    z = (values - strict.model.target_mean.numpy()) / strict.model.target_std.numpy()
    np.testing.assert_allclose(scores.energies[0].numpy(), z * np.array([-1, 1, 1]), rtol=1e-9)
    assert np.all(np.abs(scores.energies[0].numpy()) < 5)  # benzene is an ordinary QM9 molecule
    with pytest.raises(ValueError, match="out_of_domain"):
        LearnedOracle("reward-qm9", out_of_domain="ignore")
    with pytest.raises(ValueError, match="regression"):
        LearnedOracle("reward-dna-dhs", standardize=True)


def test_validity_has_one_home():
    """A table's validity predicate is oracles.canonical's: valid exactly when the canonicaliser
    (which the sample metrics use) gives a canonical form, plus the exact-length rule."""
    from datamodules.tables import sequence_validator
    from oracles.canonical import canonicaliser

    cases = {"smiles": ["CCO", "c1ccccc1", "C((", "", "[Na+].[Cl-]", "X", None],
             "dna": ["ACGT", "ACGN", "acgt", "", "AC"], "protein": ["MKV", "MKZ", "", "B"]}
    for domain, strings in cases.items():
        ok, canon = sequence_validator(domain), canonicaliser(domain)
        assert [ok(s) for s in strings] == [canon(s) is not None for s in strings], domain
    assert [sequence_validator("dna", 4)(s) for s in ("ACGT", "ACG", "ACGTA")] == [True, False, False]
    assert sequence_validator("any")("anything") and not sequence_validator("any")("")


def test_encoders_and_saving_have_their_own_modules():
    """Encoders live in networks.encoders and saving in lightning_modules.reward_io; the old
    import paths (configs and shipped checkpoints name them) still give the same objects."""
    import lightning_modules.reward_model as old
    import networks.encoders as encoders
    from lightning_modules import reward_io

    for name in ("Encoder", "FingerprintMLP", "DNAConvNet", "PooledLM", "one_hot_dna"):
        assert getattr(old, name) is getattr(encoders, name)
    for name in ("save_reward_model", "load_reward_model", "resolve_reward_checkpoint", "ExportRewardModel"):
        assert getattr(old, name) is getattr(reward_io, name)


def test_networks_never_import_datamodules():
    """networks sits below datamodules: no module of it imports datamodules (the SMILES
    tokenizer builder, which reads corpora, lives in datamodules)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "networks"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "datamodules"]
    assert offenders == []


def _degenerate_qm9_model(seed: int = 0) -> RewardModelModule:
    """A small linear-composition model that puts +1e4 on the heavy-atom column and −1e4 on every
    element, as the first reward-qm9 did: the same function as without, up to float32 rounding."""
    torch.manual_seed(seed)
    model = RewardModelModule(tasks=["a", "b"], encoder=FingerprintMLP(n_bits=64, hidden=[16], linear_composition=True))
    model.set_target_statistics(np.array([5.0, -3.0]), np.array([2.0, 0.5]))
    enc = model.encoder
    with torch.no_grad():
        start = model.heads[0].weight.shape[1] - enc.n_composition
        model.heads[0].weight[:, start + 1:start + 10] -= 1e4
        model.heads[0].weight[:, start + 10] += 1e4
    return model.eval()


def test_heavy_atom_column_folds_away_exactly(tmp_path, chembl_smiles):
    """``drop_heavy_atom_column``: the column is gone, the function (float64, exact counts) is the
    same for every molecule, and float32 predictions no longer depend on the batch."""
    from drop_heavy_atom_column import fold, main as fold_main, predictions

    smiles = list(chembl_smiles[:60]) + ["CSc1ccc(Cl)cc1Br", "P(=O)(O)(O)O", "[Si](C)(C)C"]  # S, Cl, Br, P, other
    old = _degenerate_qm9_model()
    source = save_reward_model(old, tmp_path / "old")
    new = load_reward_model(source)
    fold(new)
    assert new.encoder.n_composition == old.encoder.n_composition - 1 and not new.encoder.heavy_atoms
    assert new.heads[0].weight.shape[1] == old.heads[0].weight.shape[1] - 1
    np.testing.assert_allclose(predictions(new, smiles, 16, double=True), predictions(old, smiles, 16, double=True),
                               rtol=0, atol=1e-8)
    one, many = predictions(new, smiles, 1), predictions(new, smiles, 64)
    assert np.abs(one - many).max() < 1e-4
    # through the command: a new directory that loads, and never the checkpoint itself
    with pytest.raises(SystemExit, match="is the checkpoint itself"):
        fold_main(["--checkpoint", str(source), "--out", str(source)])
    fold_main(["--checkpoint", str(source), "--out", str(tmp_path / "new")])
    reloaded = load_reward_model(tmp_path / "new")
    np.testing.assert_allclose(reloaded.predict(smiles), new.predict(smiles), rtol=0, atol=1e-9, equal_nan=True)
    with pytest.raises(ValueError, match="no heavy-atom column"):
        fold(reloaded)


def test_shipped_reward_qm9_has_no_cancelling_weights():
    """The shipped reward-qm9 reads no heavy-atom column, so its float32 predictions are the same in
    any batch (the first one moved by up to 0.19 σ on the gap between batch 1 and 1,024)."""
    model = load_reward_model("reward-qm9")
    assert model.encoder.heavy_atoms is False
    smiles = ["C", "CCO", "c1ccccc1", "O=CC(=O)C1CCCO1", "CC1=CC2CC1C2", "N#CC1CC1", "OC1COC1=O", "CN1CC(C)C1"]
    alone = np.concatenate([model.predict([s]) for s in smiles])
    assert (np.abs(alone - model.predict(smiles)) / model.target_std.numpy()).max() < 1e-5


def test_saved_reward_model_files_honour_the_umask(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        directory = save_reward_model(_degenerate_qm9_model(), tmp_path / "m")
    finally:
        os.umask(old)
    for name in ("model.safetensors", "config.json"):
        assert (directory / name).stat().st_mode & 0o777 == 0o640, name


def test_lru_lookup_computes_missing_once_and_bounds_the_cache():
    from collections import OrderedDict

    from oracles.learned import _lru_lookup

    calls = []

    def compute(keys):
        calls.append(list(keys))
        return [len(k) for k in keys]

    cache = OrderedDict()
    assert _lru_lookup(cache, ["a", "bb", "a"], compute, size=3) == {"a": 1, "bb": 2}
    assert calls == [["a", "bb"]]  # distinct inputs, one call
    assert _lru_lookup(cache, ["bb", "ccc"], compute, size=3) == {"bb": 2, "ccc": 3}
    assert calls[-1] == ["ccc"]  # the cached one is not recomputed
    _lru_lookup(cache, ["dddd"], compute, size=3)
    assert list(cache) == ["bb", "ccc", "dddd"]  # "a" was the least recently used
    big = _lru_lookup(cache, ["e", "ff", "ggg", "hhhh", "iiiii"], compute, size=3)
    assert len(big) == 5 and big["e"] == 1  # every key answered although the cache holds 3
    assert len(cache) == 3
