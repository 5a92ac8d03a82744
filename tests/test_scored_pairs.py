"""ScoredPairsDataModule: a user's scored sequences as ERA's pairs — the file checked, the pairs
dealt to ranks and workers exactly once per epoch, a resumed epoch continued, and OfflineAlignment
training from it."""

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from datamodules import ScoredPairsDataModule
from datamodules.scored_pairs import PairStream, read_scored_samples
from datamodules.sources import DataFileError
from datamodules.streaming import StreamingLoader
from callbacks.alignment_report import AlignmentReport
from lightning_modules import OfflineAlignment
from lightning_modules.pair_losses import ERA
from networks.architectures import GPT
from networks.sampling import sample, scoring_logprob
from networks.tokenizers import load_tokenizer
from toy_oracles import Length


def _pairs(batches):
    return [(int(a), int(b)) for i, j in batches for a, b in zip(i, j)]


def test_the_file_is_read_and_checked(tmp_path, caplog):
    tokenizer = load_tokenizer("smiles")
    good = tmp_path / "good.csv"
    good.write_text("smiles,score,valid\nCCO,0.5,true\nc1ccccc1,1.5,True\nC1CC,4.5,false\nC%%C,4.5,no\n")
    frame = read_scored_samples(good, tokenizer, "smiles", "score")
    # the untokenisable invalid row is left out, with a warning; the unclosed ring stays (tokenisable)
    assert list(frame["sequence"]) == ["CCO", "c1ccccc1", "C1CC"] and "left out" in caplog.text
    assert frame["valid"].tolist() == [True, True, False] and frame["energy"].tolist() == [0.5, 1.5, 4.5]
    assert frame["input_ids"][0][0] == tokenizer.bos_token_id and frame["input_ids"][0][-1] == tokenizer.eos_token_id
    assert "ref_logprob" not in frame
    cases = {"smiles,energy\nCCO,1\nCCN,nan\nCCC,x\n": r"not a finite number in 2 row\(s\), e.g. rows \[1, 2\]",
             "smiles,score\nCCO,1\nCCN,2\n": r"no column \['energy'\]",
             "smiles,energy,valid\nCCO,1,true\nCCN,2,maybe\n": "valid' must be true/false",
             "smiles,energy\nCCO,1\nC%%C,2\n": "row 1 .* is marked valid but cannot be tokenised",
             "smiles,energy\nCCO,1\n": "pairs need at least 2"}
    for k, (text, message) in enumerate(cases.items()):
        bad = tmp_path / f"bad{k}.csv"
        bad.write_text(text)
        with pytest.raises(DataFileError, match=message):
            read_scored_samples(bad, tokenizer, "smiles")
    with pytest.raises(FileNotFoundError, match="scored samples not found"):
        read_scored_samples(tmp_path / "nope.csv", tokenizer)


def test_tokens_match_what_the_sampler_writes(tmp_path):
    """The file's sequences are encoded as the sampler's own rows, so log π is the same number."""
    torch.manual_seed(0)
    model = GPT(1, 32, 2, 64, 64, dropout=0.0).build(load_tokenizer("smiles"))
    tokenizer = load_tokenizer("smiles")
    batch = sample(model, tokenizer, 64, 30, generator=torch.Generator().manual_seed(0))
    special = set(tokenizer.all_special_ids)

    def clean(k):  # an untrained model also writes <bos>/<pad> mid-row, which decode to nothing
        ids = batch.input_ids[k][batch.attention_mask[k].bool()].tolist()
        return batch.finished[k] and batch.texts[k] and not special & set(ids[1:-1])

    rows = [k for k in range(64) if clean(k)]
    assert len(rows) > 5
    path = tmp_path / "samples.csv"
    pd.DataFrame({"sequence": [batch.texts[k] for k in rows], "energy": np.arange(len(rows)) / 10,
                  "valid": False}).to_csv(path, index=False)
    frame = read_scored_samples(path, tokenizer)
    for k, ids in zip(rows, frame["input_ids"]):
        assert ids == batch.input_ids[k][batch.attention_mask[k].bool()].tolist()


@pytest.mark.parametrize("world", [1, 3])
def test_every_pair_once_per_epoch_over_ranks_and_workers(world):
    i, j = np.arange(50), np.arange(50) + 100

    def epoch(rank, workers, epoch=1, skip=0):
        stream = PairStream(i, j, batch_size=4, seed=7, rank=rank, world_size=world)
        loader = StreamingLoader(stream, num_workers=workers, epoch_fn=lambda: epoch,
                                 resume_fn=lambda: (epoch, skip) if skip else None)
        return list(loader)

    seen = [p for rank in range(world) for p in _pairs(epoch(rank, 0))]
    assert sorted(seen) == sorted(zip(i.tolist(), j.tolist()))  # each pair exactly once, over the ranks
    assert len({len(epoch(rank, 0)) for rank in range(world)}) == 1  # the same number of steps per rank
    assert _pairs(epoch(0, 2)) == _pairs(epoch(0, 0))  # two workers: the same batches, in order
    assert _pairs(epoch(0, 0, epoch=2)) != _pairs(epoch(0, 0))  # a new order each epoch
    # a resumed epoch continues with the batches not yet trained on
    assert _pairs(epoch(0, 2, skip=3)) == _pairs(epoch(0, 0)[3:])


def test_resume_position_is_saved_and_restored():
    data = ScoredPairsDataModule("unused.csv", pairs_per_batch=4)
    data.set_pairs(np.arange(20), np.arange(20) + 20)
    full = _pairs(data.train_dataloader())
    assert len(full) == 20
    data.load_state_dict({"epoch": 0, "batches_done": 2, "n_pairs": 20})
    assert _pairs(data.train_dataloader()) == full[8:]
    with pytest.raises(ValueError, match="paired with itself"):
        data.set_pairs(np.array([1, 2]), np.array([1, 3]))


def test_offline_alignment_trains_on_a_users_file(tmp_path):
    """OfflineAlignment takes its samples from the file (no reference sampling, no Parquet written),
    computes the reference log-probabilities the file lacks, hands its pairs to the DataModule and
    lowers the energy."""
    L.seed_everything(0)
    module = OfflineAlignment(Length(), policy=GPT(1, 32, 2, 64, 64, dropout=0.0), tokenizer="smiles",
                              objective=ERA(beta=20.0, gamma=0.0), max_pairs=3000, pairs_per_batch=64,
                              dataset_path=str(tmp_path / "never_written.parquet"), top_k=None,
                              max_new_tokens=30, val_samples=256, lr=3e-3, plot_dir=str(tmp_path / "plots"))
    batch = sample(module.reference, module.tokenizer, 512, 30, generator=torch.Generator().manual_seed(1))
    keep = [k for k in range(512) if batch.texts[k]]
    texts = [batch.texts[k] for k in keep]
    path = tmp_path / "scored.csv"
    # energies from "another scorer": the oracle's plus 100, which ERA (differences only) ignores
    pd.DataFrame({"smiles": texts, "u": [100 + len(t) / 10 for t in texts]}).to_csv(path, index=False)
    data = ScoredPairsDataModule(str(path), tokenizer="smiles", sequence_column="smiles", energy_column="u",
                                 pairs_per_batch=5, seed=9, num_workers=0)
    trainer = L.Trainer(max_steps=40, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, val_check_interval=40,
                        check_val_every_n_epoch=None, num_sanity_val_steps=0, callbacks=[AlignmentReport()])
    before = module.evaluate_policy(seed=123)["energy/mean"]
    trainer.fit(module, datamodule=data)
    after = module.evaluate_policy(seed=123)["energy/mean"]
    assert after < before - 0.3, (before, after)
    assert isinstance(trainer.train_dataloader, StreamingLoader)  # the DataModule's pairs were trained on
    assert (data.pairs_per_batch, data.seed) == (64, 0)  # the module's batch size and seed, not the DataModule's
    assert not (tmp_path / "never_written.parquet").exists()
    assert len(module.energies) == len(texts) and torch.equal(torch.from_numpy(data.pair_i), module.pair_i)
    expected = scoring_logprob(module.reference, module.sample_ids, module.sample_mask)
    assert torch.allclose(module.ref_logps, expected.float(), atol=1e-4)
    # "before" is the reference's own samples under the oracle, not the file's energies
    import json

    summary = json.loads((tmp_path / "plots" / "summary.json").read_text())
    reference = module.evaluate_policy(seed=module.hparams.seed + 7, model=module.reference)
    assert summary["reference"]["energy/mean"] == pytest.approx(reference["energy/mean"])
    assert summary["reference"]["energy/mean"] < 50
    assert summary["policy"]["energy/mean"] < summary["reference"]["energy/mean"] - 0.3


def test_the_shipped_measured_energy_example_runs(tmp_path, monkeypatch):
    """configs/era/qm9_gap_measured.yaml, a few steps: the shipped QM9 file is read (4,000 DFT gaps),
    the policy and the reward model load, and "before" is the reference's own samples under the
    reward model, not the file's gaps."""
    import json
    from pathlib import Path

    from main import cli_main

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    cli = cli_main(["fit", "--config", "configs/era/qm9_gap_measured.yaml", "--trainer.max_steps", "4",
                    "--trainer.val_check_interval", "4", "--trainer.logger", "false",
                    "--trainer.enable_checkpointing", "false", "--trainer.default_root_dir", str(tmp_path),
                    "--model.init_args.val_samples", "64", "--model.init_args.invalid_from_reference", "256",
                    "--model.init_args.plot_dir", str(tmp_path)])
    module = cli.model
    assert len(module.energies) > 4000 and float(module.energies[:4000].min()) > 0.05  # the file's gaps (Ha)
    assert len(module.invalid_rows) == len(module.energies) - 4000 > 5  # and the reference's invalid strings
    summary = json.loads((tmp_path / "summary.json").read_text())
    reference = summary["reference"]
    assert 0.6 < reference["samples/validity"] < 1.0  # molgpt-qm9's samples, not the all-valid file
    assert 0.1 < reference["property/learned/gap/mean"] < 0.4 and summary["step"] == 4
    assert (tmp_path / "histogram_learned_gap.png").stat().st_size > 1000  # "learned/gap": no subfolder


def test_a_datamodule_the_module_cannot_train_from_is_refused(tmp_path):
    """Lightning takes every loader from an attached DataModule, so a wrong one would feed token
    batches as pairs (or pairs as online steps) and fail deep inside training: refused up front."""
    from lightning_modules import OnlineAlignment

    path = tmp_path / "scored.csv"
    pd.DataFrame({"sequence": ["CCO", "CCN", "CCC"], "energy": [1.0, 2.0, 3.0]}).to_csv(path, index=False)

    class Tokens(L.LightningDataModule):
        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.zeros(4, 3))

    def trainer():
        return L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)

    common = dict(policy=GPT(1, 32, 2, 64, 64, dropout=0.0), tokenizer="smiles", objective=ERA(beta=1.0),
                  top_k=None, max_new_tokens=10, val_samples=8)
    with pytest.raises(TypeError, match="OfflineAlignment cannot train from Tokens: it trains from ScoredPairsDataModule"):
        trainer().fit(OfflineAlignment(Length(), num_samples=8, dataset_path=str(tmp_path / "s.parquet"), **common),
                      datamodule=Tokens())
    assert not (tmp_path / "s.parquet").exists()  # refused before sampling anything
    online = OnlineAlignment(Length(), num_samples=8, resample_every=1, steps_per_epoch=1, **common)
    with pytest.raises(TypeError, match="OnlineAlignment cannot train from ScoredPairsDataModule: it draws its own"):
        trainer().fit(online, datamodule=ScoredPairsDataModule(str(path)))


def test_the_reference_s_invalid_strings_join_a_file_of_valid_ones(tmp_path):
    """``invalid_from_reference``: a measured file holds valid molecules only; the reference's own
    invalid samples are added as invalid rows (distinct, oracle energy, reference log-probs scored
    like the file's) for the invalid term, and stay out of the objective's pairs."""
    from oracles.base import Oracle, Scores

    class NoNitrogen(Oracle):  # strings with "N" are invalid (energy 5), the rest score their length
        name = "no_n"

        def __call__(self, sequences):
            valid = torch.tensor(["N" not in s for s in sequences])
            length = torch.tensor([len(s) / 10 for s in sequences], dtype=torch.float64)
            return Scores(torch.where(valid, length, torch.tensor(5.0, dtype=torch.float64)), valid, {}, list(sequences))

    L.seed_everything(0)
    module = OfflineAlignment(NoNitrogen(penalty=5.0), policy=GPT(1, 32, 2, 64, 64, dropout=0.0), tokenizer="smiles",
                              objective=ERA(beta=5.0), max_pairs=500, pairs_per_batch=16, top_k=None,
                              max_new_tokens=20, val_samples=16, lr=1e-3, invalid_weight=1.0,
                              invalid_from_reference=256, dataset_path=str(tmp_path / "unused.parquet"))
    path = tmp_path / "measured.csv"
    pd.DataFrame({"sequence": ["CCO", "CC=O", "c1ccccc1", "CCCC", "OCCO", "C1CC1"],
                  "energy": [0.3, 0.2, 0.5, 0.1, 0.4, 0.6]}).to_csv(path, index=False)
    generator = torch.Generator().manual_seed(module.hparams.seed + 13)
    expected = sample(module.reference, module.tokenizer, 256, 20, generator=generator).texts
    expected = list(dict.fromkeys(t for t in expected if "N" in t))
    assert len(expected) >= 5  # an untrained model writes plenty of them
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=ScoredPairsDataModule(str(path)))
    assert len(module.energies) == 6 + len(expected)
    assert module.invalid_rows.tolist() == list(range(6, 6 + len(expected)))
    assert (module.energies[6:] == 5.0).all() and module.pair_i.max() < 6 and module.pair_j.max() < 6
    decoded = module.tokenizer.batch_decode(module.sample_ids[6:], skip_special_tokens=True)
    assert [d.replace(" ", "") for d in decoded] == expected
    reference = scoring_logprob(module.reference, module.sample_ids, module.sample_mask)
    assert torch.allclose(module.ref_logps, reference.float(), atol=1e-4)
