"""Multi-objective fine-tuning: policy-gradient losses, expert merging, subsets, resume, fronts."""

import itertools
import math

import lightning as L
import numpy as np
import pytest
import torch

from callbacks import SoupFront, WeightMergingCallback, simplex_grid
from lightning_modules import MultiObjectiveModule
from lightning_modules.losses import (
    group_normalised_advantages,
    kl_penalty,
    leave_one_out_advantages,
    ppo_clip_loss,
    reinforce_loss,
)
from lightning_modules.pareto import hypervolume, nondominated, report
from lightning_modules.policy_updates import PPO, RLOO, ERAUpdate
from networks.architectures import GPT
from oracles.base import Oracle, Scores
from oracles.combine import EnergyVector
from toy_oracles import CharCount, Length


def _oracle():
    return EnergyVector([CharCount("C"), CharCount("O"), Length()])


def _module(update=None, scalarization=None, seed=0, **kwargs):
    L.seed_everything(seed)
    settings = dict(samples_per_step=16, max_new_tokens=16, val_samples=32, lr=3e-3, seed=seed, top_k=None)
    settings.update(kwargs)
    return MultiObjectiveModule(_oracle(), policy=GPT(1, 32, 2, 64, 32, dropout=0.0), tokenizer="smiles",
                                update=update or RLOO(kl_coef=0.0), scalarization=scalarization, **settings)


def _trainer(steps, callbacks=(), **kwargs):
    settings = dict(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                    limit_val_batches=0, deterministic=True)
    settings.update(kwargs)
    return L.Trainer(callbacks=list(callbacks), **settings)


def _params(module):
    return {k: v.detach().clone() for k, v in module.experts.state_dict().items()}


# --------------------------------------------------------------------------- losses
def test_leave_one_out_advantages_by_hand():
    r = torch.tensor([1.0, 2.0, 6.0, 0.0, 4.0, 8.0])
    a = leave_one_out_advantages(r, group_size=3)
    # group 1: baselines (2+6)/2=4, (1+6)/2=3.5, (1+2)/2=1.5; group 2: 6, 4, 2
    assert torch.allclose(a, torch.tensor([-3.0, -1.5, 4.5, -6.0, 0.0, 6.0]))
    assert torch.allclose(leave_one_out_advantages(r[:3]), a[:3])
    with pytest.raises(ValueError, match="groups"):
        leave_one_out_advantages(r, group_size=4)
    with pytest.raises(ValueError, match="non-finite"):
        leave_one_out_advantages(torch.tensor([1.0, float("nan")]))


def test_group_advantages_are_standardised():
    a = group_normalised_advantages(torch.tensor([1.0, 2.0, 3.0, 10.0]))
    assert abs(float(a.mean())) < 1e-6 and abs(float(a.std(unbiased=False)) - 1) < 1e-4
    assert torch.equal(group_normalised_advantages(torch.tensor([5.0])), torch.tensor([0.0]))


def test_reinforce_raises_the_probability_of_positive_advantage():
    logps = torch.tensor([-3.0, -3.0], requires_grad=True)
    reinforce_loss(logps, torch.tensor([1.0, -1.0])).backward()
    assert logps.grad[0] < 0 < logps.grad[1]  # descent raises log π of the good sample, lowers the bad


def test_ppo_clip_region():
    mask = torch.ones(1, 1)
    old = torch.zeros(1, 1)
    for logp, adv, clipped in [(0.5, 1.0, True),   # ratio e^0.5 > 1.2 with A > 0: no gradient
                               (-0.5, -1.0, True),  # ratio e^-0.5 < 0.8 with A < 0: no gradient
                               (0.1, 1.0, False),   # inside the region: gradient −A ρ
                               (0.5, -1.0, False)]:  # ratio > 1+ε with A < 0: unclipped (pessimistic)
        x = torch.tensor([[logp]], requires_grad=True)
        loss = ppo_clip_loss(x, old, torch.tensor([adv]), mask, clip=0.2)
        loss.backward()
        if clipped:
            assert float(x.grad) == 0.0
            assert math.isclose(float(loss), -adv * (1.2 if adv > 0 else 0.8), rel_tol=1e-6)
        else:
            assert math.isclose(float(x.grad), -adv * math.exp(logp), rel_tol=1e-5)


def test_ppo_ignores_padding():
    x = torch.tensor([[0.1, 5.0]], requires_grad=True)
    loss = ppo_clip_loss(x, torch.zeros(1, 2), torch.tensor([1.0]), torch.tensor([[1, 0]]))
    loss.backward()
    assert x.grad[0, 1] == 0 and math.isclose(float(loss), -math.exp(0.1), rel_tol=1e-6)


def test_kl_penalty_sign_and_zero():
    mask = torch.ones(1, 3)
    ref = torch.log(torch.tensor([[0.5, 0.2, 0.1]]))
    same = ref.clone().requires_grad_(True)
    kl = kl_penalty(same, ref, mask)
    kl.backward()
    assert float(kl) == 0.0 and torch.allclose(same.grad, torch.zeros_like(same.grad))
    higher = (ref + 0.3).requires_grad_(True)
    kl = kl_penalty(higher, ref, mask)
    kl.backward()
    assert float(kl) > 0 and (higher.grad > 0).all()  # descent lowers log π back towards π_ref


# --------------------------------------------------------------------------- merging
def test_merge_is_the_weighted_average():
    module = _module()
    with torch.no_grad():
        for k, expert in enumerate(module.experts):
            for p in expert.parameters():
                p.add_(torch.randn_like(p) * (k + 1))
    before = [_expert_vector(e) for e in module.experts]
    weights = [0.5, 0.3, 0.2]
    expected = sum(w * v for w, v in zip(weights, before))
    soup = module.load_soup(weights)
    assert torch.allclose(torch.nn.utils.parameters_to_vector(soup.parameters()), expected, atol=1e-6)
    assert all(torch.equal(_expert_vector(e), v) for e, v in zip(module.experts, before))  # untouched
    module.merge_experts([5, 3, 2])  # unnormalised weights mean the same
    for expert in module.experts:
        assert torch.allclose(_expert_vector(expert), expected, atol=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        module.merge_experts([1, -1, 1])


def _expert_vector(expert):
    return torch.nn.utils.parameters_to_vector(expert.parameters()).detach().clone()


def test_subsets_are_seeded_and_uniform():
    a, b = WeightMergingCallback(num_active=2, seed=3), WeightMergingCallback(num_active=2, seed=3)
    draws = [tuple(a.draw_subset(4)) for _ in range(6000)]
    assert draws[:50] == [tuple(b.draw_subset(4)) for _ in range(50)]
    assert all(len(set(d)) == 2 for d in draws)
    combos = list(itertools.combinations(range(4), 2))
    counts = np.array([draws.count(c) for c in combos])
    expected = len(draws) / len(combos)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 20.5, (chi2, counts)  # χ²(5 dof) 99.9% quantile


class _Spy(L.Callback):
    def __init__(self):
        self.actives, self.distinct_experts = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        vectors = [_expert_vector(e) for e in pl_module.experts]
        self.distinct_experts.append((trainer.global_step, not all(torch.equal(vectors[0], v) for v in vectors)))
        self.actives.append(list(pl_module.active))


def test_merges_happen_at_multiples_of_m_only():
    module = _module()
    merging = WeightMergingCallback(every_n_steps=3, num_active=2, seed=1)
    spy = _Spy()  # runs after the merging callback: sees the post-merge experts
    _trainer(8, [merging, spy]).fit(module)
    identical_after = [step for step, distinct in spy.distinct_experts if not distinct]
    assert identical_after == [3, 6]
    assert merging.merges == 2 and merging.last_merge_step == 6
    assert all(len(a) == 2 for a in spy.actives)


def test_optimizer_state_reset_and_keep():
    states = {}
    for reset in (True, False):
        module = _module()
        trainer = _trainer(3, [WeightMergingCallback(every_n_steps=3, reset_optimizer=reset)])
        trainer.fit(module)
        states[reset] = len(trainer.optimizers[0].state)
    assert states[True] == 0 and states[False] > 0


def test_inactive_experts_do_not_move():
    module = _module()
    merging = WeightMergingCallback(every_n_steps=100, num_active=1, seed=0)
    before = [_expert_vector(e) for e in module.experts]
    _trainer(3, [merging]).fit(module)
    moved = [not torch.equal(_expert_vector(e), b) for e, b in zip(module.experts, before)]
    assert moved == [e in merging.subset for e in range(3)] and sum(moved) == 1


def test_resume_after_two_and_a_half_periods_is_exact(tmp_path):
    def run(steps, ckpt=None, save=None):
        module = _module(update=PPO(inner_steps=2, kl_coef=0.1))
        callbacks = [WeightMergingCallback(every_n_steps=2, num_active=2, seed=5)]
        trainer = _trainer(steps, callbacks, enable_checkpointing=True, default_root_dir=str(tmp_path))
        trainer.fit(module, ckpt_path=ckpt)
        if save:
            trainer.save_checkpoint(save)
        return module, callbacks[0]

    full, full_cb = run(9)
    run(5, save=tmp_path / "half.ckpt")  # 2.5 merge periods, mid PPO round
    resumed, resumed_cb = run(9, ckpt=str(tmp_path / "half.ckpt"))
    assert full_cb.merges == resumed_cb.merges == 4 and full_cb.subset == resumed_cb.subset
    for k, v in _params(full).items():
        assert torch.equal(v, _params(resumed)[k]), k


@pytest.mark.parametrize("update", [RLOO(kl_coef=0.01), PPO(inner_steps=2), ERAUpdate(beta=5.0)],
                         ids=["rloo", "ppo", "era"])
def test_each_expert_improves_its_own_objective(update):
    module = _module(update=update, samples_per_step=32, lr=1e-2)
    before = module.evaluate([1, 0, 0], n=128, seed=9)["energy/count_C"]
    _trainer(25).fit(module)
    module.load_soup([1, 0, 0])
    after = module.evaluate([1, 0, 0], n=128, seed=9)["energy/count_C"]
    assert after < before - 0.1, (before, after)


def test_morlhf_trains_one_policy_on_the_weighted_sum():
    module = _module(scalarization=[1.0, 0.0, 1.0])
    assert module.num_experts == 1
    energies = np.array([[1.0, 5.0, 3.0]])
    assert module.expert_energy(0, energies)[0] == 2.0
    with pytest.raises(ValueError, match="scalarization"):
        _module(scalarization=[1.0, 1.0])


def test_supervised_baseline_learns_from_the_references_best_samples_only():
    """SupervisedTopK: rounds come from the frozen reference (the same samples whatever the
    policy has become), the loss is the NLL of the lowest-energy fraction, and fine-tuning on
    them lowers the policy's energy."""
    from lightning_modules.policy_updates import Round, SupervisedTopK
    from networks.sampling import sample

    update = SupervisedTopK(fraction=0.25)
    g = torch.Generator().manual_seed(0)
    batch = Round(input_ids=torch.randint(3, 20, (8, 5), generator=g), attention_mask=torch.ones(8, 5, dtype=torch.long),
                  energies=torch.tensor([3.0, -1.0, 2.0, -5.0, 0.0, 1.0, 4.0, 2.5]), old_token_logps=None,
                  ref_token_logps=torch.zeros(8, 4), texts=[str(k) for k in range(8)], made_at_step=0)
    token_logps = -torch.rand(8, 4, generator=g)
    targets = update.prepare(batch)  # energies -5 and -1: only they are kept, in that order
    assert targets.texts == ["3", "1"] and torch.equal(targets.input_ids, batch.input_ids[[3, 1]])
    assert update.prepare(targets) is targets  # once: never the best quarter of the best quarter
    with pytest.raises(ValueError, match="prepare"):
        update.loss(token_logps, batch)
    masked = batch.rows(batch.energies < 0)
    assert masked.texts == ["1", "3"] and masked.energies.tolist() == [-1.0, -5.0]
    with pytest.raises(TypeError, match="integer positions"):
        batch.rows(torch.tensor([0.0, 1.0]))
    loss, stats = update.loss(token_logps[[3, 1]], targets)
    assert stats["kept"] == 2.0 and stats["reward"] == 3.0
    torch.testing.assert_close(loss, -token_logps[[3, 1]].sum(-1).mean())
    with pytest.raises(ValueError, match="fraction"):
        SupervisedTopK(fraction=0.0)

    module = _module(update=SupervisedTopK(fraction=0.25), scalarization=[1.0, 0.0, 0.0], samples_per_step=32,
                     lr=1e-2)
    with torch.no_grad():  # move the policy away from the reference: rounds must still be the reference's
        for p in module.experts.parameters():
            p.add_(0.5 * torch.randn_like(p))
    round_ = module._new_round(0)
    seeded = torch.Generator().manual_seed(module._seed(0, 0, 0))
    expected = sample(module.reference, module.tokenizer, 32, 16, 1.0, None, generator=seeded)
    energies = module.expert_energy(0, module.energy_matrix(expected.texts)[0])
    best = [expected.texts[i] for i in np.argsort(energies.astype(np.float32), kind="stable")[:8]]
    assert round_.texts == best  # the 8 lowest-energy of the reference's 32
    assert round_.ref_token_logps is None and round_.old_token_logps is None  # no pass the loss would not read
    module = _module(update=SupervisedTopK(fraction=0.25), scalarization=[1.0, 0.0, 0.0], samples_per_step=32,
                     lr=1e-2)
    before = module.evaluate([1.0], n=128, seed=9)["energy/count_C"]
    _trainer(25).fit(module)
    after = module.evaluate([1.0], n=128, seed=9)["energy/count_C"]
    assert after < before - 0.1, (before, after)


def test_non_finite_energies_are_rejected():
    class Broken(Oracle):
        name = "broken"

        def __call__(self, sequences):
            return Scores(torch.full((len(sequences),), float("nan"), dtype=torch.float64),
                          torch.zeros(len(sequences), dtype=torch.bool))

    module = MultiObjectiveModule(EnergyVector([Broken(), Length()]), policy=GPT(1, 32, 2, 64, 32),
                                  samples_per_step=4, max_new_tokens=8)
    with pytest.raises(ValueError, match="broken"):
        module.evaluate(n=4)


def test_a_penalty_that_favours_invalid_samples_is_warned_about_once_naming_the_objective(caplog):
    """One objective's penalty below its valid energies is named; the others are not."""
    import logging

    class EveryOtherInvalid(Oracle):
        def __init__(self, name, penalty):
            super().__init__(penalty=penalty, name=name)

        def __call__(self, sequences):
            valid = torch.arange(len(sequences)) % 2 == 0
            return Scores(torch.where(valid, 1.0, self.penalty).double(), valid)

    module = MultiObjectiveModule(EnergyVector([EveryOtherInvalid("fine", 5.0), EveryOtherInvalid("rewards_junk", 0.0)]),
                                  policy=GPT(1, 32, 2, 64, 32), samples_per_step=4, max_new_tokens=8)
    with caplog.at_level(logging.WARNING, logger="lightning_modules.multi_objective"):
        module.energy_matrix(["C", "O", "N", "S"])
        module.energy_matrix(["C", "O", "N", "S"])
    warned = [r.getMessage() for r in caplog.records if r.name == "lightning_modules.multi_objective"]
    assert len(warned) == 1 and "'rewards_junk'" in warned[0] and "'fine'" not in warned[0]


# --------------------------------------------------------------------------- fronts
def test_simplex_grid():
    assert simplex_grid(2, 0.1)[:2] == [(0.0, 1.0), (0.1, 0.9)] and len(simplex_grid(2, 0.1)) == 11
    grid = simplex_grid(3, 0.25)
    assert len(grid) == 15 and all(abs(sum(w) - 1) < 1e-12 for w in grid)


def test_pareto_tools():
    points = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [3.0, 3.0]])
    assert nondominated(points).tolist() == [True, True, True, False]
    # union of boxes to (4, 4): 3·1 + 2·1 + 1·1 = 6
    assert hypervolume(points, [4.0, 4.0]) == pytest.approx(6.0)
    assert hypervolume(np.array([[5.0, 5.0]]), [4.0, 4.0]) == 0.0
    with pytest.raises(ValueError, match="coordinates"):
        hypervolume(points, [4.0])


def test_soup_front_writes_a_front_and_report(tmp_path):
    module = _module(val_samples=16)
    front = SoupFront(step=0.5, num_samples=16, reference=[1.0, 1.0, 5.0], method="rs", dirpath=str(tmp_path))
    _trainer(2, [front]).fit(module)
    frame = front.front
    assert len(frame) == 6 and {"energy/count_C", "energy/count_O", "energy/length"} <= set(frame.columns)
    assert (tmp_path / "front.png").is_file() and (tmp_path / "hypervolume.txt").is_file()
    summary = report([str(tmp_path / "front.csv")], [1.0, 1.0, 5.0], str(tmp_path / "report"))
    assert summary["method"].tolist() == ["rs"] and summary["mean"].iloc[0] > 0
    assert (tmp_path / "report" / "fronts.png").is_file()


def test_irs_config_runs_through_the_cli(tmp_path, monkeypatch):
    from pathlib import Path

    from main import cli_main

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["main.py"])
    cli = cli_main(["fit", "--config", str(root / "configs/irs/rdkit_tri_tiny.yaml"),
                    "--trainer.enable_progress_bar", "false"])
    merging = next(c for c in cli.trainer.callbacks if isinstance(c, WeightMergingCallback))
    front = next(c for c in cli.trainer.callbacks if isinstance(c, SoupFront))
    assert cli.trainer.global_step == 6 and merging.merges == 3 and merging.last_merge_step == 6
    # the last step is a merge: the experts are one network, so the "front" is its single point
    assert front.identical_experts and cli.model.expert_spread() == 0.0
    path = (tmp_path / "runs/irs/rdkit_tri_tiny/front.csv")
    assert path.is_file() and len(path.read_text().splitlines()) == 1 + 1
    assert (tmp_path / "runs/irs/rdkit_tri_tiny/checkpoints/last.ckpt").is_file()
