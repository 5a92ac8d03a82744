"""Multi-objective evaluation (issue 27): no fronts from one network, the per-policy CSV rows with
KL and budget, the protocol runner's resumption and its report."""

import math
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from callbacks import SoupFront, WeightMergingCallback
from callbacks.mo_eval import PolicyEvaluation
from lightning_modules import MultiObjectiveModule
from lightning_modules.pareto import balance
from lightning_modules.policy_updates import RLOO
from networks.architectures import GPT
from oracles.combine import EnergyVector
from toy_oracles import CharCount, Length

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import mo_protocol  # noqa: E402


def _module(scalarization=None, seed=0, lr=3e-3, samples=8):
    L.seed_everything(seed)
    return MultiObjectiveModule(EnergyVector([CharCount("C"), CharCount("O"), Length()]),
                                policy=GPT(1, 32, 2, 64, 32, dropout=0.0), tokenizer="smiles",
                                update=RLOO(kl_coef=0.0), scalarization=scalarization, samples_per_step=samples,
                                max_new_tokens=16, val_samples=16, lr=lr, seed=seed, top_k=None)


def _trainer(steps, callbacks=()):
    return L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     limit_val_batches=0, deterministic=True, callbacks=list(callbacks))


# --------------------------------------------------------------------------- fronts from one network
def test_an_irs_run_ending_on_a_merge_cannot_report_a_multi_point_front(tmp_path):
    module = _module()
    front = SoupFront(step=0.5, num_samples=8, method="irs", dirpath=str(tmp_path))
    _trainer(4, [WeightMergingCallback(every_n_steps=2, num_active=2), front]).fit(module)
    assert module.expert_spread() == 0.0 and front.identical_experts
    written = pd.read_csv(tmp_path / "front.csv")
    assert len(written) == 1 and bool(written.identical_experts.iloc[0])
    assert np.allclose(written[["w0", "w1", "w2"]].to_numpy(), 1 / 3)

    strict = SoupFront(step=0.5, num_samples=8, method="irs", dirpath=str(tmp_path / "strict"), on_identical="raise")
    with pytest.raises(RuntimeError, match="one network"):
        _trainer(4, [WeightMergingCallback(every_n_steps=2, num_active=2), strict]).fit(_module())


def test_experts_that_trained_after_the_last_merge_still_give_a_front(tmp_path):
    module = _module()
    front = SoupFront(step=0.5, num_samples=8, method="irs", dirpath=str(tmp_path))
    _trainer(5, [WeightMergingCallback(every_n_steps=2, num_active=3), front]).fit(module)
    assert module.expert_spread() > 1e-4 and not front.identical_experts
    assert len(pd.read_csv(tmp_path / "front.csv")) == 6  # the 3-objective simplex at step 0.5


def test_soup_front_rejects_an_unknown_policy():
    with pytest.raises(ValueError, match="on_identical"):
        SoupFront(on_identical="ignore")


# --------------------------------------------------------------------------- balance
def test_balance_by_hand():
    stats = balance([0.2, 0.4, 0.6])
    sd = math.sqrt(((0.2 - 0.4) ** 2 + 0 + (0.6 - 0.4) ** 2) / 3)
    assert stats["average_reward"] == pytest.approx(0.4) and stats["reward_sd"] == pytest.approx(sd)
    assert stats["balance_cv"] == pytest.approx(sd / 0.4) and stats["icv"] == pytest.approx(0.4 / sd)
    even = balance([0.3, 0.3, 0.3])
    assert even["balance_cv"] == 0.0 and even["icv"] == math.inf
    assert balance([-1.0, 1.0])["balance_cv"] == math.inf  # mean 0: the ratio means nothing
    with pytest.raises(ValueError, match="one mean per objective"):
        balance([[1.0, 2.0]])


# --------------------------------------------------------------------------- per-policy rows
def _run(method, tmp_path, seed=0, steps=5, lr=3e-3):
    callbacks = [PolicyEvaluation(every_n_steps=2, num_samples=32, task="toy", path=str(tmp_path / f"{method}.csv"))]
    if method == "irs":
        callbacks.insert(0, WeightMergingCallback(every_n_steps=2, num_active=2, seed=None))
    module = _module(scalarization=[1.0, 1.0, 1.0] if method == "morlhf" else None, seed=seed, lr=lr)
    _trainer(steps, callbacks).fit(module)
    return module, pd.read_csv(tmp_path / f"{method}.csv", dtype={"w": str})


def test_rows_carry_rewards_kl_and_budget(tmp_path):
    rows = {m: _run(m, tmp_path)[1] for m in ("irs", "rs", "morlhf")}
    for method, frame in rows.items():  # the toy runs update by RLOO, not the protocol's PPO: labelled so
        assert frame.step.tolist() == [0, 2, 4, 5] and (frame.method == f"{method}_rloo").all()
        assert (frame.task == "toy").all()
        assert (frame.w == "0.3333/0.3333/0.3333").all() and (frame.precision == "32-true").all()
    # budget: 8 samples per trained expert per step (IRS trains 2 of 3, RS 3, MORLHF its one policy)
    for method, experts in (("irs", 2), ("rs", 3), ("morlhf", 1)):
        assert rows[method].oracle_calls.tolist() == [8 * experts * s for s in (0, 2, 4, 5)]
        assert rows[method].expert_updates.tolist() == [experts * s for s in (0, 2, 4, 5)]
    irs = rows["irs"]
    # rewards are −energy; the raw column is the oracle's own value (count of C; energy −count/5)
    assert np.allclose(irs["reward/count_C"], -irs["energy/count_C"])
    assert np.allclose(irs["raw/count_C"], 5 * irs["reward/count_C"])
    assert np.allclose(irs["raw/length"], -10 * irs["reward/length"])
    rewards = irs[["reward/count_C", "reward/count_O", "reward/length"]].to_numpy()
    assert np.allclose(irs.average_reward, rewards.mean(1)) and np.allclose(irs.reward_sd, rewards.std(1))
    assert {"samples/validity", "samples/uniqueness", "samples/intdiv1", "kl", "wall_s"} <= set(irs.columns)
    # step 0 is the reference: KL 0, and IRS and RS (same seed, same soup) drew the very same samples
    assert abs(irs.kl.iloc[0]) < 1e-4
    assert rows["rs"].iloc[0][["average_reward", "kl"]].tolist() == irs.iloc[0][["average_reward", "kl"]].tolist()


def test_kl_grows_as_the_policy_leaves_the_reference(tmp_path):
    _, frame = _run("morlhf", tmp_path, steps=6, lr=3e-2)
    assert abs(frame.kl.iloc[0]) < 1e-4 and frame.kl.iloc[-1] > 0.1, frame.kl.tolist()


def test_merge_subsets_follow_the_module_seed():
    subsets = {}
    for seed in (1, 2):
        merging = WeightMergingCallback(every_n_steps=1, num_active=1, seed=None)
        history = []

        class Spy(L.Callback):
            def on_train_batch_end(self, trainer, pl_module, *args):
                history.append(tuple(pl_module.active))

        _trainer(6, [merging, Spy()]).fit(_module(seed=seed))
        subsets[seed] = history
    assert subsets[1] != subsets[2]


def test_a_csv_with_other_columns_is_not_mixed_into(tmp_path):
    path = tmp_path / "evals.csv"
    path.write_text("task,step\nold,0\n")
    with pytest.raises(ValueError, match="other columns"):
        _trainer(1, [PolicyEvaluation(every_n_steps=1, num_samples=4, path=str(path))]).fit(_module())
    assert path.read_text() == "task,step\nold,0\n"



def test_a_resumed_run_widens_its_own_file_for_a_metric_added_since(tmp_path):
    """A checkpointed run resumed after an evaluation metric was added (DNA's outside-domain share)
    keeps its rows, the new column empty in the older ones; without a resume the file is refused."""
    path = tmp_path / "evals.csv"
    path.write_text("task,step\nt,0\n")
    row = {"task": "t", "step": 10, "samples/outside_domain": 0.1}
    with pytest.raises(ValueError, match="other columns"):
        PolicyEvaluation._append(path, row)
    PolicyEvaluation._append(path, row, widen=True)
    assert path.read_text() == "task,step,samples/outside_domain\nt,0,\nt,10,0.1\n"
    with pytest.raises(ValueError, match="other columns"):  # fewer columns: still refused
        PolicyEvaluation._append(path, {"task": "t", "step": 20}, widen=True)
    callback = PolicyEvaluation(every_n_steps=1, num_samples=4, path=str(path))
    assert not callback._resumed
    callback.load_state_dict(callback.state_dict())
    assert callback._resumed

# --------------------------------------------------------------------------- runner and report
def _rows(method, seed, rewards, kls=(0.0, 0.01, 0.02), steps=(0, 50, 100)):
    return pd.DataFrame({"task": "t", "method": method, "w": mo_protocol.UNIFORM, "seed": seed, "step": list(steps),
                         "average_reward": list(rewards), "reward_sd": 0.1, "balance_cv": 0.5, "icv": 2.0,
                         "kl": list(kls), "samples/validity": 0.9, "samples/uniqueness": 1.0,
                         "samples/intdiv1": 0.8, "oracle_calls": [2 * s for s in steps],
                         "expert_updates": [s // 25 for s in steps],
                         "reward/a": list(rewards), "precision": "32-true", "run_wall_s": 60.0})


def test_runner_skips_finished_runs_and_replaces_a_rerun(tmp_path):
    csv = tmp_path / "results.csv"
    assert not mo_protocol.finished(csv, "t", "irs", 0, 100)
    mo_protocol.add_rows(csv, _rows("irs", 0, [0.0, 0.1, 0.2]))
    mo_protocol.add_rows(csv, _rows("rs", 0, [0.0, 0.1, 0.1]))
    assert mo_protocol.finished(csv, "t", "irs", 0, 100) and not mo_protocol.finished(csv, "t", "irs", 1, 100)
    assert not mo_protocol.finished(csv, "t", "irs", 0, 400)  # a longer budget is another run
    mo_protocol.add_rows(csv, _rows("irs", 0, [0.0, 0.1, 0.3]))  # the same run again replaces its rows
    frame = pd.read_csv(csv)
    assert len(frame) == 6 and frame[(frame.method == "irs") & (frame.step == 100)].average_reward.tolist() == [0.3]
    assert not (tmp_path / "results.csv.tmp").exists()


def test_report_pairs_seeds_and_tests_irs_against_each_baseline(tmp_path):
    csv = tmp_path / "results.csv"
    irs = [0.30, 0.35, 0.28, 0.40, 0.33]
    rs = [0.20, 0.30, 0.25, 0.31, 0.22]
    for seed in range(5):
        mo_protocol.add_rows(csv, _rows("irs", seed, [0.0, 0.1, irs[seed]]))
        mo_protocol.add_rows(csv, _rows("rs", seed, [0.0, 0.1, rs[seed]]))
        mo_protocol.add_rows(csv, _rows("morlhf", seed, [0.0, 0.1, irs[seed]]))  # identical to IRS: no test
    summary, tests = mo_protocol.report(csv, tmp_path / "img", quiet=True)
    row = summary.set_index("method").loc["irs"]
    assert row.seeds == 5 and row.average_reward == pytest.approx(np.mean(irs))
    assert row["average_reward se"] == pytest.approx(np.std(irs, ddof=1) / np.sqrt(5))
    from scipy import stats

    vs_rs = tests.set_index("comparison").loc["irs - rs"]
    assert vs_rs.pairs == 5 and vs_rs.wins == 5 and vs_rs.mean_diff == pytest.approx(np.mean(irs) - np.mean(rs))
    assert vs_rs.t_p == pytest.approx(stats.ttest_rel(irs, rs).pvalue)
    assert vs_rs.wilcoxon_p == pytest.approx(0.0625)  # 5 of 5 pairs one way: the smallest two-sided p
    assert math.isnan(tests.set_index("comparison").loc["irs - morlhf"].t_p)
    assert (tmp_path / "img" / "results_t_kl.png").is_file()  # named by the CSV: one study, one set
    assert (tmp_path / "img" / "results_t_oracle.png").is_file()
    assert "irs - rs" in (tmp_path / "results_summary.md").read_text()


def test_side_by_side_runners_never_train_the_same_run(tmp_path):
    import os

    run_dir = tmp_path / "qm9_tri" / "irs_s0"
    assert mo_protocol.claim(run_dir) and (run_dir / "running.pid").read_text().strip() == str(os.getpid())
    (run_dir / "running.pid").write_text(f"{os.getppid()}\n")  # a live process holds it
    assert not mo_protocol.claim(run_dir)
    (run_dir / "running.pid").write_text("999999999\n")  # a runner that died
    assert mo_protocol.claim(run_dir)


def test_a_run_trained_to_the_end_but_not_recorded_is_collected_not_retrained(tmp_path):
    runs, csv = tmp_path / "runs", tmp_path / "results.csv"
    run_dir = runs / "t" / "irs_s0"
    run_dir.mkdir(parents=True)
    _rows("irs", 0, [0.0, 0.1, 0.2]).drop(columns="run_wall_s").assign(wall_s=[1.0, 50.0, 99.0]).to_csv(
        run_dir / "evals.csv", index=False)
    assert mo_protocol.run_one("t", "irs", 0, 100, runs, csv, python="/bin/false")  # /bin/false: no training
    assert mo_protocol.finished(csv, "t", "irs", 0, 100) and pd.read_csv(csv).run_wall_s.iloc[0] == 99.0
    # cut short (no step-100 row): kept aside, and training is tried again (here it fails, recording nothing)
    (runs / "t" / "rs_s0").mkdir()
    _rows("rs", 0, [0.0, 0.1], steps=(0, 50), kls=(0, 0)).to_csv(runs / "t" / "rs_s0" / "evals.csv", index=False)
    (runs / "t" / "rs_s0" / "checkpoints").mkdir()  # its checkpoints: main.py would refuse to mix two runs'
    (runs / "t" / "rs_s0" / "checkpoints" / "last.ckpt").write_text("old run")
    assert not mo_protocol.run_one("t", "rs", 0, 100, runs, csv, python="/bin/false")
    assert (runs / "t" / "rs_s0" / "evals.interrupted.csv").is_file() and not mo_protocol.finished(csv, "t", "rs", 0, 100)
    assert not (runs / "t" / "rs_s0" / "checkpoints").exists()
    assert (runs / "t" / "rs_s0" / "checkpoints.interrupted" / "last.ckpt").read_text() == "old run"


def test_unfinished_runs_join_the_curves_and_a_matched_step_table_only(tmp_path):
    csv, runs = tmp_path / "results.csv", tmp_path / "runs"
    mo_protocol.add_rows(csv, _rows("irs", 0, [0.0, 0.1, 0.2]))
    (runs / "t" / "rs_s0").mkdir(parents=True)
    _rows("rs", 0, [0.0, 0.05], steps=(0, 50), kls=(0, 0.03)).to_csv(runs / "t" / "rs_s0" / "evals.csv", index=False)
    (runs / "t" / "irs_s0").mkdir(parents=True)  # already in the CSV: not counted twice
    _rows("irs", 0, [0.0, 0.1, 0.2]).to_csv(runs / "t" / "irs_s0" / "evals.csv", index=False)
    summary, tests = mo_protocol.report(csv, tmp_path / "img", quiet=True, runs=runs)
    assert summary.method.tolist() == ["irs"] and tests.pairs.tolist() == [0, 0]  # RS has not finished
    partial = pd.read_csv(tmp_path / "results_partial.csv")
    assert partial.method.unique().tolist() == ["rs"] and partial.step.max() == 50
    text = (tmp_path / "results_summary.md").read_text()
    assert "| t | 0 | 50 | irs | 0.100 |" in text and "| t | 0 | 50 | rs | 0.050 |" in text


def test_matched_kl_reads_the_other_curve_at_irs_final_kl():
    """IRS ends at KL 2 with reward 1.0; MORLHF's own curve passes KL 2 at reward 0.5 (linear between
    its evaluations at KL 1 and 3), so IRS leads by 0.5 at matched KL although MORLHF ends higher.
    A seed whose IRS KL lies outside the other curve's range is left out."""
    frame = pd.concat([_rows("irs", 0, [0.0, 0.5, 1.0], kls=(0.0, 1.0, 2.0)),
                       _rows("morlhf", 0, [0.0, 0.0, 1.0], kls=(0.0, 1.0, 3.0)),
                       _rows("irs", 1, [0.0, 0.5, 1.0], kls=(0.0, 1.0, 2.0)),
                       _rows("morlhf", 1, [0.0, 0.2, 0.6], kls=(0.0, 1.0, 3.0)),
                       _rows("irs", 2, [0.0, 0.5, 1.0], kls=(0.0, 5.0, 9.0)),  # beyond MORLHF's range
                       _rows("morlhf", 2, [0.0, 0.2, 0.6], kls=(0.0, 1.0, 3.0))], ignore_index=True)
    tests = mo_protocol.matched_kl_tests(frame)
    row = tests[tests.comparison.str.contains("morlhf")].iloc[0]
    assert row.pairs == 2 and row.wins == 2 and row.kl_mean == 2.0
    assert abs(row.mean_diff - ((1.0 - 0.5) + (1.0 - 0.4)) / 2) < 1e-12
    assert not tests.comparison.str.contains(" rs ").any()  # no RS runs: no row
    assert mo_protocol.paired_tests(frame).query("comparison == 'irs - morlhf'").mean_diff.iloc[0] < 0.6


def test_rows_labelled_as_another_method_are_never_recorded(tmp_path):
    """A run whose evaluations carry another method's label (a supervised run once labelled itself
    'morlhf') must not replace that method's rows of the same seed."""
    runs, csv = tmp_path / "runs", tmp_path / "results.csv"
    mo_protocol.add_rows(csv, _rows("morlhf", 0, [0.0, 1.0, 2.0]))
    run_dir = runs / "t" / "supervised_s0"
    run_dir.mkdir(parents=True)
    _rows("morlhf", 0, [0.0, 0.1, 0.2]).assign(wall_s=1.0).to_csv(run_dir / "evals.csv", index=False)
    assert not mo_protocol.run_one("t", "supervised", 0, 100, runs, csv, python="/bin/false")
    kept = pd.read_csv(csv)
    assert kept.average_reward.tolist() == [0.0, 1.0, 2.0] and not mo_protocol.finished(csv, "t", "supervised", 0, 100)


def test_the_supervised_baseline_labels_itself():
    from types import SimpleNamespace

    from callbacks.mo_eval import method_of
    from lightning_modules.policy_updates import PPO, SupervisedTopK

    trainer = SimpleNamespace(callbacks=[])
    module = lambda update: SimpleNamespace(update=update, hparams=SimpleNamespace(scalarization=[1.0, 1.0]))  # noqa: E731
    assert method_of(trainer, module(SupervisedTopK())) == "supervised"
    assert method_of(trainer, module(PPO())) == "morlhf"
    from callbacks import WeightMergingCallback
    from lightning_modules.policy_updates import RLOO, ERAUpdate

    assert method_of(trainer, module(RLOO())) == "morlhf_rloo"  # another update rule: its own rows
    merging = SimpleNamespace(callbacks=[WeightMergingCallback(every_n_steps=4)])
    assert method_of(merging, module(ERAUpdate(beta=10.0, gamma=9.0))) == "irs_era"
    assert method_of(merging, module(PPO())) == "irs"


def test_evaluation_reports_the_share_of_samples_outside_the_reward_models_domain():
    """``samples/outside_domain`` = share outside among the samples the domain can read (the
    oracle's ``outside_domain`` gives NaN for the others); absent when the oracle has no domain."""
    module = _module()
    assert "samples/outside_domain" not in module.evaluate(n=16, seed=1, detailed=True)
    seen: list[list[str]] = []

    def judge(texts):  # "readable" = has a C; "outside" = also has an O
        return np.array([float("O" in t) if "C" in t else np.nan for t in texts])

    module.oracle.outside_domain = lambda texts: seen.append(list(texts)) or judge(texts)
    stats = module.evaluate(n=16, seed=1, detailed=True)
    verdict = judge(seen[0])
    assert np.isnan(verdict).any() and np.isfinite(verdict).any()  # the case is not trivial
    assert stats["samples/outside_domain"] == pytest.approx(np.nanmean(verdict))


def test_a_run_cut_short_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    """Evaluations after the checkpoint's step are dropped and redone; the command names the
    checkpoint; a truncated checkpoint means starting again from step 0."""
    runs, csv = tmp_path / "runs", tmp_path / "results.csv"
    run_dir = runs / "t" / "irs_s0"
    (run_dir / "checkpoints").mkdir(parents=True)
    cut = _rows("irs", 0, [0.0, 0.1, 0.15], steps=(0, 20, 40)).drop(columns="run_wall_s").assign(wall_s=[1.0, 60.0, 120.0])
    cut.to_csv(run_dir / "evals.csv", index=False)
    torch.save({"global_step": 30, "state_dict": {}}, run_dir / "checkpoints" / "last.ckpt")
    calls = []

    def train(cmd, **kwargs):  # what main.py would do: go on from step 30, evaluate at 40 and 100
        calls.append(cmd)
        seen = pd.read_csv(run_dir / "evals.csv")
        assert seen.step.tolist() == [0, 20]  # the step-40 evaluation came after the checkpoint: redone
        # PolicyEvaluation carries its clock through the checkpoint: wall_s goes on from ~90 s
        more = _rows("irs", 0, [0.2, 0.3], steps=(40, 100), kls=(0.02, 0.03)).drop(columns="run_wall_s").assign(wall_s=[130.0, 300.0])
        pd.concat([seen, more]).to_csv(run_dir / "evals.csv", index=False)
        return 0

    monkeypatch.setattr(mo_protocol.subprocess, "call", train)
    assert mo_protocol.run_one("t", "irs", 0, 100, runs, csv, python="python")
    cmd = calls[0]
    assert cmd[cmd.index("--ckpt_path") + 1] == str(run_dir / "checkpoints" / "last.ckpt")
    recorded = pd.read_csv(csv)
    assert recorded.step.tolist() == [0, 20, 40, 100] and (recorded.resumed_from_step == 30).all()
    assert (recorded.run_wall_s == 300.0).all()  # training seconds across both attempts
    assert not (run_dir / "checkpoints").exists()  # recorded: the resume checkpoint is deleted

    # a resume that fails (here: exit 1) is not tried again: the next attempt starts from step 0
    run_dir = runs / "t" / "morlhf_s0"
    (run_dir / "checkpoints").mkdir(parents=True)
    cut.assign(method="morlhf").to_csv(run_dir / "evals.csv", index=False)
    torch.save({"global_step": 30}, run_dir / "checkpoints" / "last.ckpt")
    monkeypatch.setattr(mo_protocol.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 1)
    assert not mo_protocol.run_one("t", "morlhf", 0, 100, runs, csv, python="python")
    assert "--ckpt_path" in calls[-1] and mo_protocol.resume_point(run_dir, 100) is None
    assert (run_dir / "checkpoints.failed-resume" / "last.ckpt").is_file() and (run_dir / "evals.csv.failed-resume").is_file()
    assert not mo_protocol.run_one("t", "morlhf", 0, 100, runs, csv, python="python")
    assert "--ckpt_path" not in calls[-1]

    # a truncated checkpoint: no --ckpt_path, the partial run is kept aside and redone from step 0
    run_dir = runs / "t" / "rs_s0"
    (run_dir / "checkpoints").mkdir(parents=True)
    cut.assign(method="rs").to_csv(run_dir / "evals.csv", index=False)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    calls.clear()
    monkeypatch.setattr(mo_protocol.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 1)
    assert not mo_protocol.run_one("t", "rs", 0, 100, runs, csv, python="python")
    assert "--ckpt_path" not in calls[0] and (run_dir / "evals.interrupted.csv").is_file()
    assert (run_dir / "checkpoints.interrupted" / "last.ckpt").is_file()
    # a checkpoint from a longer run (step ≥ T) is not resumed either
    torch.save({"global_step": 100}, tmp_path / "long.ckpt")
    (run_dir / "checkpoints").mkdir()
    (tmp_path / "long.ckpt").replace(run_dir / "checkpoints" / "last.ckpt")
    assert mo_protocol.resume_point(run_dir, 50) is None and mo_protocol.resume_point(run_dir, 100)[1] == 100


def test_evaluation_clock_goes_on_through_a_checkpoint():
    import time

    first = PolicyEvaluation()
    first._started = time.monotonic() - 90.0  # 90 s of training so far
    resumed = PolicyEvaluation()
    resumed.load_state_dict(first.state_dict())
    trainer = type("T", (), {"global_step": 30})()
    resumed.on_train_start(trainer, None)
    assert 90.0 <= time.monotonic() - resumed._started < 95.0


def test_protocol_configs_save_a_checkpoint_to_resume_from():
    import yaml

    for files in mo_protocol.TASK_CONFIGS.values():
        base = yaml.safe_load((ROOT / "configs" / "multi_objective" / files[0]).read_text())
        assert base["trainer"]["enable_checkpointing"] is True
        for name in files:  # an override that replaces the callbacks keeps the checkpoint
            callbacks = yaml.safe_load((ROOT / "configs" / "multi_objective" / name).read_text())["trainer"].get("callbacks")
            if callbacks is None:
                continue
            saving = [c["init_args"] for c in callbacks if c["class_path"].endswith("ModelCheckpoint")]
            assert saving and saving[0]["save_last"] and 0 < saving[0]["every_n_train_steps"] <= 20, name


def test_summary_shows_the_share_outside_the_domain_only_where_measured(tmp_path):
    csv = tmp_path / "results.csv"
    mo_protocol.add_rows(csv, _rows("irs", 0, [0.0, 0.1, 0.2]))
    summary, tests = mo_protocol.report(csv, tmp_path / "img", quiet=True)
    assert "outside domain" not in (tmp_path / "results_summary.md").read_text()
    assert tests.comparison.tolist() == ["irs - rs", "irs - morlhf"]  # supervised: optional, not run
    mo_protocol.add_rows(csv, _rows("morlhf", 0, [0.0, 0.3, 0.5]).assign(**{"samples/outside_domain": [0.1, 0.2, 0.4]}))
    summary, _ = mo_protocol.report(csv, tmp_path / "img", quiet=True)
    assert summary.set_index("method").loc["morlhf", "samples/outside_domain"] == pytest.approx(0.4)
    assert "outside domain" in (tmp_path / "results_summary.md").read_text()



def test_summary_says_over_how_many_seeds_a_later_metric_was_measured(tmp_path):
    """A metric added after some runs were made (DNA IntDiv1) is averaged over the seeds that have
    it, and the table says so instead of passing it off as the row's seed count."""
    csv = tmp_path / "results.csv"
    for seed, diversity in enumerate([np.nan, np.nan, 0.6]):
        mo_protocol.add_rows(csv, _rows("irs", seed, [0.0, 0.1, 0.2]).assign(**{"samples/intdiv1": diversity}))
    summary, _ = mo_protocol.report(csv, tmp_path / "img", quiet=True)
    row = summary.set_index("method").loc["irs"]
    assert row.seeds == 3 and row["samples/intdiv1 n"] == 1 and row["samples/intdiv1"] == pytest.approx(0.6)
    assert row["average_reward n"] == 3
    text = (tmp_path / "results_summary.md").read_text()
    assert "0.600 (1 of 3 seeds)" in text and "0.200 ± 0.000 |" in text

def test_irs_era_composes_irs_with_the_era_update_and_its_task_beta(tmp_path):
    """The runner's irs_era: the IRS override then the ERA one, β of the task; the composed config
    builds the ERA update and the merging callback."""
    from main import cli_main

    cmd = mo_protocol.command("dna_3cell", "irs_era", 1, 100, tmp_path, "python")
    configs = [Path(cmd[k + 1]).name for k, a in enumerate(cmd) if a == "--config"]
    assert configs == ["dna_3cell.yaml", "irs.yaml", "era.yaml"]
    assert cmd[cmd.index("--model.init_args.update.init_args.beta") + 1] == "200.0"
    assert "--model.init_args.update.init_args.beta" not in mo_protocol.command("qm9_tri", "irs", 0, 100, tmp_path, "python")
    cli = cli_main([*cmd[3:cmd.index("--seed_everything")], "--trainer.max_steps", "0",
                    "--trainer.default_root_dir", str(tmp_path)], run=False)
    update = cli.model.update
    assert type(update).__name__ == "ERAUpdate" and update.beta == 200.0 and update.gamma == 9.0
    assert any(type(c).__name__ == "WeightMergingCallback" for c in cli.trainer.callbacks)


def test_the_in_domain_variant_penalises_samples_outside_the_reward_models_domain(tmp_path):
    from main import cli_main

    cmd = mo_protocol.command("qm9_tri_in_domain", "irs", 0, 100, tmp_path, "python")
    configs = [Path(cmd[k + 1]).name for k, a in enumerate(cmd) if a == "--config"]
    assert configs == ["qm9_tri.yaml", "in_domain.yaml", "irs.yaml"]
    cli = cli_main([*cmd[3:cmd.index("--seed_everything")], "--trainer.max_steps", "0",
                    "--trainer.default_root_dir", str(tmp_path)], run=False)
    oracle = cli.model.oracle
    assert oracle.domain_check == "penalty" and oracle.out_of_domain == "penalty" and oracle.penalty == 3.0
    scores = oracle(["CCO", "CC(=O)Oc1ccccc1C(=O)O"])  # ethanol inside; aspirin: 13 heavy atoms
    assert scores.valid.tolist() == [True, False] and scores.energies[1].tolist() == [3.0, 3.0, 3.0]
    evaluation = next(c for c in cli.trainer.callbacks if type(c).__name__ == "PolicyEvaluation")
    assert evaluation.task == "qm9_tri_in_domain"
    assert any(type(c).__name__ == "WeightMergingCallback" for c in cli.trainer.callbacks)
    assert any(type(c).__name__ == "ModelCheckpoint" for c in cli.trainer.callbacks)
