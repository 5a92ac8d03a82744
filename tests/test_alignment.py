"""Offline alignment end to end on a tiny model: the data set is made once, energies fall."""

import json

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from callbacks.alignment_report import AlignmentReport
from lightning_modules import OfflineAlignment
from lightning_modules.alignment import NonFiniteEnergyError
from lightning_modules.pair_losses import DPO, ERA
from networks.architectures import GPT
from oracles.base import Oracle, Scores
from toy_oracles import Length


class Broken(Oracle):
    name = "broken"

    def __call__(self, sequences):
        return Scores(torch.full((len(sequences),), float("nan"), dtype=torch.float64),
                      torch.zeros(len(sequences), dtype=torch.bool))


def _module(tmp_path, objective, oracle=None):
    L.seed_everything(0)
    return OfflineAlignment(oracle or Length(), policy=GPT(1, 32, 2, 64, 64, dropout=0.0), tokenizer="smiles",
                            objective=objective, num_samples=128, max_pairs=4000, pairs_per_batch=64,
                            dataset_path=str(tmp_path / "samples.parquet"), top_k=None, max_new_tokens=30,
                            val_samples=256, lr=3e-3, plot_dir=str(tmp_path / "plots"))


def _fit_and_measure(module, steps=40):
    """Train ``steps`` steps (with the report main.py adds); the policy's mean energy on the same
    seeded samples before and after."""
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, val_check_interval=steps,
                        num_sanity_val_steps=0, callbacks=[AlignmentReport()])
    before = module.evaluate_policy(seed=123)["energy/mean"]
    trainer.fit(module)
    return trainer, before, module.evaluate_policy(seed=123)["energy/mean"]


@pytest.mark.parametrize("objective", [ERA(beta=20.0, gamma=0.0), DPO(beta=0.5)], ids=["era", "dpo"])
def test_offline_alignment_lowers_the_energy(tmp_path, objective):
    module = _module(tmp_path, objective)
    trainer, before, after = _fit_and_measure(module)
    assert after < before - 0.3, (before, after)
    frame = pd.read_parquet(tmp_path / "samples.parquet")
    assert len(frame) == 128 and {"sequence", "input_ids", "energy", "valid", "ref_logprob"} <= set(frame.columns)
    assert (tmp_path / "plots" / "histogram_length.png").is_file()
    # the before/after table as JSON, for sweeps: the reference's numbers are those of its stored samples
    summary = json.loads((tmp_path / "plots" / "summary.json").read_text())
    assert summary["reference"]["energy/mean"] == pytest.approx(frame["energy"].mean())
    assert summary["reference"]["energy/valid_mean"] == pytest.approx(frame.loc[frame["valid"], "energy"].mean())
    assert summary["policy"]["energy/mean"] == module.history[-1]["energy/mean"] < summary["reference"]["energy/mean"]
    assert summary["objective"]["class"].endswith(type(objective).__name__) and summary["step"] == 40
    # the reference never moves
    assert not any(p.requires_grad for p in module.reference.parameters())


def test_stored_ref_logprobs_match_the_reference(tmp_path):
    from networks.sampling import sequence_logprob

    module = _module(tmp_path, ERA())
    module.prepare_data()
    module.setup("fit")
    ref = sequence_logprob(module.reference, module.sample_ids, module.sample_mask)
    assert (ref - module.ref_logps).abs().max() < 1e-4
    assert len(module.pair_i) == 4000 and (module.pair_i != module.pair_j).all()


def test_nan_energies_are_rejected_naming_the_oracle(tmp_path):
    module = _module(tmp_path, ERA(), oracle=Broken())
    with pytest.raises(NonFiniteEnergyError, match="oracle 'broken' returned 128 non-finite"):
        module.prepare_data()
    assert not (tmp_path / "samples.parquet").exists()


def test_era_config_runs_through_the_cli(tmp_path, monkeypatch, capsys):
    """configs/era/base.yaml + tasks/qed.yaml wired end to end (tiny stand-in checkpoint, 3 steps)."""
    from pathlib import Path

    from main import cli_main
    from networks.tokenizers import load_tokenizer

    root = Path(__file__).resolve().parents[1]
    tok = load_tokenizer("smiles")
    GPT(1, 32, 2, 64, 64).build(tok).save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    monkeypatch.setattr("sys.argv", ["main.py"])
    monkeypatch.chdir(tmp_path)
    cli_main(["fit", "--config", str(root / "configs/era/base.yaml"), "--config", str(root / "configs/era/tasks/qed.yaml"),
              "--trainer.max_steps=3",
              "--trainer.val_check_interval=3", f"--model.init_args.tokenizer={tmp_path / 'ckpt'}",
              f"--model.init_args.policy.init_args.path={tmp_path / 'ckpt'}", "--model.init_args.num_samples=64",
              "--model.init_args.val_samples=32", "--model.init_args.max_new_tokens=20",
              "--trainer.enable_progress_bar=false"])
    frame = pd.read_parquet(tmp_path / "runs/era/qed/offline_samples.parquet")
    assert len(frame) == 64 and set(frame.loc[~frame["valid"], "energy"]) <= {4.5}
    assert (tmp_path / "runs/era/qed/pretrained/model.safetensors").is_file()
    out = capsys.readouterr().out
    assert "samples/validity" in out and "samples/intdiv1" in out  # the before/after table

    # benchmarks/era_reevaluate.py rebuilds the run from its saved config and checkpoint: with the
    # run's own evaluation seed (seed + 1) and sample count it reproduces the last validation exactly
    import sys

    sys.path.insert(0, str(root / "benchmarks"))
    import era_reevaluate

    era_reevaluate.main([str(tmp_path / "runs/era/qed"), "--n", "32", "--seed", "1"])
    again = json.loads((tmp_path / "runs/era/qed/summary_n32_seed1.json").read_text())
    (run_summary,) = (tmp_path / "runs/era/qed").glob("**/summary.json")
    run_summary = json.loads(run_summary.read_text())
    assert again["step"] == 3 and again["evaluation"]["n"] == 32 and again["objective"] == run_summary["objective"]
    assert again["policy"] == run_summary["policy"]
    assert again["reference"]["samples/kl_to_reference"] == 0.0 and again["policy"]["samples/kl_to_reference"] != 0.0


def test_online_alignment_lowers_the_energy_and_checkpoints_its_round(tmp_path):
    from lightning_modules import OnlineAlignment

    L.seed_everything(0)
    module = OnlineAlignment(Length(), policy=GPT(1, 32, 2, 64, 64, dropout=0.0), tokenizer="smiles",
                             objective=ERA(beta=20.0), num_samples=64, max_pairs=2000, pairs_per_batch=64,
                             top_k=None, max_new_tokens=30, val_samples=256, lr=3e-3, resample_every=10,
                             plot_dir=str(tmp_path))
    trainer, before, after = _fit_and_measure(module)
    assert module.rounds == 4
    assert after < before - 0.3, (before, after)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["objective"]["beta"] == 20.0 and summary["reference"]["samples/kl_to_reference"] == 0.0
    assert summary["policy"]["energy/mean"] < summary["reference"]["energy/mean"]
    trainer.save_checkpoint(tmp_path / "online.ckpt")
    state = torch.load(tmp_path / "online.ckpt", weights_only=True)
    assert state["online_rounds"] == 4 and torch.equal(state["online_round"]["i"], module.round["i"])


def test_offline_set_made_with_other_settings_is_not_reused(tmp_path):
    module = _module(tmp_path, ERA(beta=5.0))
    module.prepare_data()
    module.prepare_data()  # same settings: reused
    changed = _module(tmp_path, ERA(beta=5.0))
    changed.hparams.top_k = 5
    with pytest.raises(ValueError, match="top_k"):
        changed.prepare_data()
    other_oracle = _module(tmp_path, ERA(beta=5.0), oracle=Broken())
    with pytest.raises(ValueError, match="oracle"):
        other_oracle.prepare_data()


def test_offline_set_survives_a_new_argument_with_a_none_default(tmp_path):
    """A setting recorded before an argument existed (here the policy's, stored without a key that
    is now ``None``) is the same setting: an upgrade must not invalidate every user's sample set,
    while a real change still does."""
    import json

    import pyarrow.parquet as pq

    from datamodules.reference_samples import SETTINGS_KEY

    module = _module(tmp_path, ERA(beta=5.0))
    module.prepare_data()
    path = tmp_path / "samples.parquet"
    table = pq.read_table(path)
    settings = json.loads(table.schema.metadata[SETTINGS_KEY])
    settings["policy"]["init_args"]["added_later"] = None
    pq.write_table(table.replace_schema_metadata({SETTINGS_KEY: json.dumps(settings).encode()}), path)
    _module(tmp_path, ERA(beta=5.0)).prepare_data()  # None-valued extra leaf: the same settings
    settings["policy"]["init_args"]["added_later"] = 3
    pq.write_table(table.replace_schema_metadata({SETTINGS_KEY: json.dumps(settings).encode()}), path)
    with pytest.raises(ValueError, match="policy"):
        _module(tmp_path, ERA(beta=5.0)).prepare_data()


class PenaltyBelowValid(Oracle):
    """Energy 1 for valid strings (those without ``char``), ``penalty`` for the rest."""

    name = "penalised"

    def __init__(self, penalty, char="C"):
        super().__init__(penalty=penalty)
        self.char = char

    def __call__(self, sequences):
        valid = torch.tensor([self.char not in s for s in sequences])
        return Scores(torch.where(valid, 1.0, self.penalty).double(), valid, {}, list(sequences))


def test_a_penalty_below_the_valid_energies_is_warned_about_once(tmp_path, caplog):
    """A penalty that makes invalid output the best output is a silent wrong result; it is named."""
    import logging

    texts = ["CC", "NN", "OO", "CO", "N"]
    quiet = _module(tmp_path, ERA(beta=5.0), oracle=PenaltyBelowValid(penalty=5.0))
    loud = _module(tmp_path, ERA(beta=5.0), oracle=PenaltyBelowValid(penalty=0.0))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lightning_modules.alignment"):
        quiet._score(texts)
        assert not [r for r in caplog.records if r.name == "lightning_modules.alignment"]
        loud._score(texts)
        loud._score(texts)
    warned = [r for r in caplog.records if r.name == "lightning_modules.alignment"]
    assert len(warned) == 1 and "'penalised'" in warned[0].getMessage() and "favour invalid" in warned[0].getMessage()


def test_invalid_samples_can_leave_the_pairs_for_a_term_of_their_own(tmp_path):
    """``invalid_weight`` > 0: the objective's pairs only join valid samples, and a DPO term on
    (valid, invalid) pairs makes the invalid ones less likely — for offline and online training."""
    from lightning_modules import OnlineAlignment
    from networks.sampling import sequence_logprob

    L.seed_everything(0)
    module = OfflineAlignment(PenaltyBelowValid(penalty=5.0, char="N"), policy=GPT(1, 32, 2, 64, 64, dropout=0.0),
                              tokenizer="smiles", objective=ERA(beta=5.0), num_samples=128, max_pairs=4000,
                              pairs_per_batch=64, dataset_path=str(tmp_path / "samples.parquet"), top_k=None,
                              max_new_tokens=30, val_samples=64, lr=3e-3, plot_dir=str(tmp_path / "plots"),
                              invalid_weight=1.0)
    module.prepare_data()
    module.setup("fit")
    valid = torch.tensor(pd.read_parquet(tmp_path / "samples.parquet")["valid"].to_numpy())
    assert 10 < int((~valid).sum()) < 124  # both kinds present in the untrained model's samples (≥ 5 valid)
    assert valid[module.pair_i].all() and valid[module.pair_j].all()
    assert torch.equal(module.invalid_rows, torch.nonzero(~valid).flatten())
    assert torch.equal(module.valid_rows, torch.nonzero(valid).flatten())
    trainer = L.Trainer(max_steps=30, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module)
    with torch.no_grad():
        moved = sequence_logprob(module.model, module.sample_ids, module.sample_mask) - module.ref_logps
    assert moved[valid].mean() - moved[~valid].mean() > 1.0, (moved[valid].mean(), moved[~valid].mean())
    # the energy of the valid samples alone is what β moves here; energy/mean also carries the penalty
    stats = module.evaluate_policy(n=128, seed=5)
    energies, ok = module.last_evaluation.energies, module.last_evaluation.valid
    assert 0 < ok.sum() < len(ok) and stats["energy/valid_mean"] == pytest.approx(energies[ok].mean())
    assert stats["energy/valid_mean"] != pytest.approx(stats["energy/mean"])

    L.seed_everything(0)
    online = OnlineAlignment(PenaltyBelowValid(penalty=5.0, char="N"), policy=GPT(1, 32, 2, 64, 64, dropout=0.0),
                             tokenizer="smiles", objective=ERA(beta=5.0), num_samples=64, pairs_per_batch=32,
                             top_k=None, max_new_tokens=30, val_samples=64, lr=3e-3, resample_every=5,
                             plot_dir=str(tmp_path), invalid_weight=1.0)
    trainer = L.Trainer(max_steps=5, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(online)
    r = online.round
    assert len(r["invalid_rows"]) and not set(r["invalid_rows"].tolist()) & set(r["i"].tolist() + r["j"].tolist())


class Rendezvous(Length):
    """Length, but scoring waits until the network's work has started, and tells it that it has:
    run one after the other (either order), one side would time out."""

    def __init__(self):
        super().__init__()
        import threading

        self.scoring_started, self.work_started = threading.Event(), threading.Event()

    def __call__(self, sequences):
        self.scoring_started.set()
        assert self.work_started.wait(10), "the oracle ran before the network's work, not alongside it"
        return super().__call__(sequences)


def test_the_oracle_scores_while_the_reference_computes(tmp_path):
    oracle = Rendezvous()
    module = _module(tmp_path, ERA(), oracle=oracle)
    texts = ["CCO", "C1CC1", "c1ccccc1"]

    def work():
        oracle.work_started.set()
        assert oracle.scoring_started.wait(10), "the network's work ran before the oracle, not alongside it"
        return "reference done"

    (energies, valid, values), done = module._score_alongside(texts, work)
    assert done == "reference done"
    expected = Length()(texts)
    assert energies.tolist() == expected.energies.tolist() and valid.tolist() == expected.valid.tolist()
    # the oracle's errors reach the caller, from the scoring thread, with their message
    broken = _module(tmp_path / "b", ERA(), oracle=Broken())
    with pytest.raises(NonFiniteEnergyError, match="oracle 'broken' returned 3 non-finite"):
        broken._score_alongside(texts, lambda: None)


def test_online_rounds_reject_nan_energies_naming_the_oracle():
    from lightning_modules import OnlineAlignment

    module = OnlineAlignment(Broken(), policy=GPT(1, 32, 2, 64, 64, dropout=0.0), tokenizer="smiles",
                             num_samples=8, top_k=None, max_new_tokens=10, val_samples=8)
    with pytest.raises(NonFiniteEnergyError, match="oracle 'broken' returned 8 non-finite"):
        module._new_round()


def test_the_offline_set_is_drawn_on_the_trainers_device(tmp_path, monkeypatch):
    """prepare_data runs before Lightning moves the module: the reference must go to the accelerator
    itself. (A 'meta' device stands in for a GPU: the call is recorded and stopped there.)"""
    from types import SimpleNamespace

    import datamodules.reference_samples as reference_samples

    seen = {}

    def record(model, *args, generator=None, **kwargs):
        seen["model"], seen["generator"] = next(model.parameters()).device, generator.device
        raise RuntimeError("stop here")

    module = _module(tmp_path, ERA())
    class Generator:  # torch has no generator on 'meta'
        def __init__(self, device=None):
            self.device = torch.device(device)

        def manual_seed(self, seed):
            return self

    monkeypatch.setattr(reference_samples, "sample", record)
    monkeypatch.setattr(reference_samples.torch, "Generator", Generator)
    module._trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("meta")))
    with pytest.raises(RuntimeError, match="stop here"):
        module.prepare_data()
    assert seen["model"].type == "meta" and seen["generator"].type == "meta"


def test_novelty_against_the_training_molecules(tmp_path, monkeypatch):
    import datamodules.sources

    def module(reference):
        return OfflineAlignment(Length(), policy=GPT(1, 32, 2, 64, 64, dropout=0.0), tokenizer="smiles",
                                novelty_reference=reference)

    samples = ["CCO", "c1ccccc1", "CCN", "CCO", "C1CC"]  # 3 distinct valid molecules, one invalid string
    # a user's file is canonicalised: OCC is ethanol
    (tmp_path / "train.smi").write_text("OCC\nCCCC\n")
    quality = module(str(tmp_path / "train.smi")).sample_quality(samples)
    assert quality["samples/novelty"] == pytest.approx(2 / 3)
    assert quality["samples/validity"] == pytest.approx(4 / 5)
    # MOSES train is compared as given (already canonical), as MOSES does: OCC is not CCO there
    (tmp_path / "moses.csv").write_text("SMILES,SPLIT\nOCC,train\nCCN,train\n")
    monkeypatch.setattr(datamodules.sources, "moses_path", lambda split: tmp_path / "moses.csv")
    assert module("moses").sample_quality(samples)["samples/novelty"] == pytest.approx(2 / 3)
    # not logged unless asked for; a missing file is a clear error
    assert "samples/novelty" not in module(None).sample_quality(samples)
    with pytest.raises(FileNotFoundError, match="novelty_reference 'nope.smi'"):
        module("nope.smi").sample_quality(samples)


class TwoProperties(Length):
    """Energy = length / 10, with a second logged property: each property gets its histogram."""

    name = "two"

    def __call__(self, sequences):
        scores = super().__call__(sequences)
        carbons = torch.tensor([float(s.count("C")) for s in sequences], dtype=torch.float64).numpy()
        return Scores(scores.energies, scores.valid, {"length": scores.values["length"], "carbons": carbons},
                      list(sequences))


def test_every_property_gets_its_histogram(tmp_path):
    module = _module(tmp_path, ERA(), oracle=TwoProperties())
    trainer, _, _ = _fit_and_measure(module, steps=2)
    for name in ("length", "carbons"):
        assert (tmp_path / "plots" / f"histogram_{name}.png").stat().st_size > 1000
    (report,) = [c for c in trainer.callbacks if isinstance(c, AlignmentReport)]
    assert report.last_plot == tmp_path / "plots" / "histogram_length.png"


def test_sft_weight_is_the_sft_wrapper(tmp_path):
    """The old ``sft_weight`` argument composes ``pair_losses.WithSFT`` around the objective: the same
    loss on the same pairs as naming the wrapper in the config."""
    from lightning_modules.pair_losses import WithSFT

    old = OfflineAlignment(Length(), policy=GPT(1, 32, 2, 64, 64, dropout=0.0), tokenizer="smiles",
                           objective=ERA(beta=20.0), sft_weight=0.25, dataset_path=str(tmp_path / "s.parquet"))
    assert isinstance(old.objective, WithSFT) and old.objective.weight == 0.25
    assert isinstance(old.objective.objective, ERA) and old.objective.objective.beta == 20.0
    new = OfflineAlignment(Length(), policy=GPT(1, 32, 2, 64, 64, dropout=0.0), tokenizer="smiles",
                           objective=WithSFT(ERA(beta=20.0), 0.25), dataset_path=str(tmp_path / "s.parquet"))
    new.model.load_state_dict(old.model.state_dict())
    new.reference.load_state_dict(old.reference.state_dict())
    ids = torch.randint(3, 20, (6, 8))
    mask = torch.ones_like(ids)
    energies, ref = torch.linspace(0, 5, 6), torch.linspace(-20, -10, 6)
    i, j = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    with torch.no_grad():
        plain = ERA(beta=20.0)(*new.rows_logprob(ids, mask, torch.cat([i, j])).split(3), ref[i], ref[j],
                               energies[i], energies[j])
        a, b = old.pair_loss(ids, mask, energies, ref, i, j), new.pair_loss(ids, mask, energies, ref, i, j)
    assert torch.equal(a, b) and not torch.equal(a, plain)


def test_invalid_weight_is_the_invalid_term(tmp_path):
    """``invalid_weight``/``invalid_beta`` are shorthand for ``invalid_term: InvalidTerm(weight, beta)``:
    the same pairs (valid samples only) and the same loss; giving both is an error."""
    from lightning_modules.invalid_term import InvalidTerm

    common = dict(policy=GPT(1, 32, 2, 64, 64, dropout=0.0), tokenizer="smiles", objective=ERA(beta=20.0),
                  dataset_path=str(tmp_path / "s.parquet"), pairs_per_batch=4)
    old = OfflineAlignment(Length(), invalid_weight=2.0, invalid_beta=0.3, **common)
    new = OfflineAlignment(Length(), invalid_term=InvalidTerm(2.0, 0.3), **common)
    plain = OfflineAlignment(Length(), **common)
    assert old.invalid_term.weight == 2.0 and old.invalid_term.beta == 0.3 and plain.invalid_term is None
    new.model.load_state_dict(old.model.state_dict())
    valid = np.array([True, False, True, True, False, True])
    texts = ["C", "N", "CC", "CCC", "NN", "CCCC"]
    i, j, good, bad = new._pairs_and_invalid(texts, valid, 0)
    assert valid[i].all() and valid[j].all() and len(i) == 6
    assert [a.tolist() for a in old._pairs_and_invalid(texts, valid, 0)] == [a.tolist() for a in (i, j, good, bad)]
    assert len(plain._pairs_and_invalid(texts, valid, 0)[0]) == 15  # without the term every sample is paired
    ids = torch.randint(3, 20, (6, 8))
    mask = torch.ones_like(ids)
    ref = torch.linspace(-20, -10, 6)
    with torch.no_grad():
        a, b = old.invalid_loss(ids, mask, ref, good, bad, 3), new.invalid_loss(ids, mask, ref, good, bad, 3)
    assert torch.equal(a, b) and a.item() != 0
    with pytest.raises(ValueError, match="not both"):
        OfflineAlignment(Length(), invalid_term=InvalidTerm(), invalid_weight=1.0, **common)
