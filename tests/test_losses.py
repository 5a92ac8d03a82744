"""ERA and DPO losses: hand-computed values, symmetry, fixed point, and convergence to π*."""

import math

import numpy as np
import pytest
import torch

from lightning_modules.losses import bernoulli_kl, dpo_loss, era_logits, era_loss, nll_loss
from datamodules.pairs import all_pairs, make_pairs, n_pairs, pair_from_linear, sample_pairs


def sig(x):
    return 1 / (1 + math.exp(-x))


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_era_loss_hand_computed():
    # one pair: log π = (-2, -3), log π_ref = (-1, -4), U = (0.5, 0.2), β = 2, γ = 1
    beta, gamma = 2.0, 1.0
    bp, gp = beta / 2, gamma / 2
    l_pi = -3 - (-2)
    l_star = -bp * (0.2 - 0.5) + gp * (-4 - (-1))
    p, q = sig(l_star), sig(l_pi)
    forward = p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    reverse = q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p))
    args = (t(-2.0), t(-3.0), t(-1.0), t(-4.0), t(0.5), t(0.2))
    assert era_loss(*args, beta=beta, gamma=gamma).item() == pytest.approx(forward, rel=1e-12)
    assert era_loss(*args, beta=beta, gamma=gamma, reverse_kl=True).item() == pytest.approx(reverse, rel=1e-12)


def test_era_symmetric_under_swapping_the_pair():
    g = torch.Generator().manual_seed(0)
    a, b, ra, rb, ua, ub = (torch.randn(16, generator=g, dtype=torch.float64) for _ in range(6))
    for reverse in (False, True):
        one = era_loss(a, b, ra, rb, ua, ub, beta=3.0, gamma=0.5, reverse_kl=reverse)
        two = era_loss(b, a, rb, ra, ub, ua, beta=3.0, gamma=0.5, reverse_kl=reverse)
        assert one.item() == pytest.approx(two.item(), rel=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
def test_zero_loss_and_zero_gradient_at_the_target(reverse):
    beta, gamma = 4.0, 0.3
    bp, gp = beta / (1 + gamma), gamma / (1 + gamma)
    g = torch.Generator().manual_seed(1)
    u1, u2, r1, r2 = (torch.randn(8, generator=g, dtype=torch.float64) for _ in range(4))
    pi1 = torch.randn(8, generator=g, dtype=torch.float64, requires_grad=True)
    # choose π(y₂) so that the policy logit equals the target logit
    pi2 = (pi1.detach() - bp * (u2 - u1) + gp * (r2 - r1)).requires_grad_(True)
    loss = era_loss(pi1, pi2, r1, r2, u1, u2, beta=beta, gamma=gamma, reverse_kl=reverse)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert pi1.grad.abs().max() < 1e-12 and pi2.grad.abs().max() < 1e-12


def test_target_is_not_trained_through_reference_or_energies():
    r = t(-1.0, -2.0).requires_grad_(True)
    _, target = era_logits(t(0.0), t(1.0), r[:1], r[1:], t(0.0), t(1.0), 1.0, 1.0)
    assert not target.requires_grad


def test_max_shift_bounds_the_target_around_the_reference_odds():
    # pair 1: ℓ_ref = −27, exact ℓ* = −20·(0.5 − 4.5) + 0.9·(−27) = 55.7 → clipped to −27 + 5 = −22
    # pair 2: ℓ_ref = 1, exact ℓ* = −20·(0.1) + 0.9 = −1.1, within 5 nats of ℓ_ref → kept
    args = (t(-10.0, -30.0), t(-40.0, -29.0), t(-3.0, -30.0), t(-30.0, -29.0), t(4.5, 0.4), t(0.5, 0.5))
    _, exact = era_logits(*args, 200.0, 9.0)
    _, bounded = era_logits(*args, 200.0, 9.0, max_shift=5.0)
    assert exact.tolist() == pytest.approx([55.7, -1.1], rel=1e-12)
    assert bounded.tolist() == pytest.approx([-22.0, -1.1], rel=1e-12)
    # a bound no pair reaches is the exact loss; the loss is still symmetric under swapping
    assert era_loss(*args, beta=200.0, gamma=9.0, max_shift=100.0).item() == era_loss(*args, beta=200.0, gamma=9.0).item()
    swapped = (args[1], args[0], args[3], args[2], args[5], args[4])
    assert era_loss(*args, beta=200.0, gamma=9.0, max_shift=5.0).item() == pytest.approx(
        era_loss(*swapped, beta=200.0, gamma=9.0, max_shift=5.0).item(), rel=1e-12)
    # zero loss once the policy's odds equal the bounded target
    pi2 = (t(-10.0, -30.0) + bounded).requires_grad_(True)
    loss = era_loss(t(-10.0, -30.0), pi2, *args[2:], beta=200.0, gamma=9.0, max_shift=5.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12) and pi2.grad.abs().max() < 1e-12
    with pytest.raises(ValueError, match="max_shift must be > 0"):
        era_loss(*args, beta=200.0, gamma=9.0, max_shift=0.0)


def test_bernoulli_kl_is_nonnegative_and_zero_on_equal():
    x = torch.linspace(-8, 8, 41, dtype=torch.float64)
    assert (bernoulli_kl(x, x.flip(0)) >= 0).all()
    assert bernoulli_kl(x, x).abs().max() < 1e-15


def test_nonfinite_energies_are_rejected():
    with pytest.raises(ValueError, match="energies_2 has 1 non-finite"):
        era_loss(t(0.0), t(0.0), t(0.0), t(0.0), t(1.0), t(float("nan")))
    with pytest.raises(ValueError, match="non-finite"):
        dpo_loss(t(0.0), t(0.0), t(0.0), t(0.0), t(float("inf")), t(1.0))
    with pytest.raises(ValueError, match="beta and gamma"):
        era_loss(t(0.0), t(0.0), t(0.0), t(0.0), t(0.0), t(0.0), beta=-1.0)


def _tabular_optimum(energies, ref_logp, beta, gamma, loss_fn):
    """Minimise the mean pair loss over free logits with L-BFGS (Adam converges too, slower)."""
    n = energies.numel()
    i, j = (torch.from_numpy(x) for x in all_pairs(n))
    theta = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logp = theta.log_softmax(0)
        loss = loss_fn(logp[i], logp[j], ref_logp[i], ref_logp[j], energies[i], energies[j], beta=beta, gamma=gamma)
        loss.backward()
        return loss

    opt.step(closure)
    return theta.detach().softmax(0)


@pytest.mark.parametrize("beta,gamma", [(1.0, 0.0), (5.0, 0.0), (2.0, 0.5), (10.0, 2.0)])
@pytest.mark.parametrize("reverse", [False, True])
def test_era_converges_to_the_analytic_optimum(beta, gamma, reverse):
    """On a free-logit categorical over 10 items with all 45 pairs, ERA's minimiser is
    π* ∝ exp(−β'U + γ' log π_ref). A pairing bug or a dropped regulariser fails this test."""
    g = torch.Generator().manual_seed(int(beta * 10 + gamma * 100))
    energies = torch.rand(10, generator=g, dtype=torch.float64)
    ref_logp = torch.randn(10, generator=g, dtype=torch.float64).log_softmax(0)
    bp, gp = beta / (1 + gamma), gamma / (1 + gamma)
    target = (-bp * energies + gp * ref_logp).softmax(0)
    fn = lambda *a, **k: era_loss(*a, **k, reverse_kl=reverse)  # noqa: E731
    learned = _tabular_optimum(energies, ref_logp, beta, gamma, fn)
    tv = 0.5 * (learned - target).abs().sum().item()
    assert tv < 0.01, tv
    if gamma == 0:  # the Boltzmann distribution
        assert torch.allclose(target, (-beta * energies).softmax(0))


def test_dpo_prefers_lower_energy_with_the_right_sign():
    # y₂ has the lower energy: raising log π(y₂) must lower the loss
    pi2 = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    loss = dpo_loss(t(0.0), pi2, t(0.0), t(0.0), t(1.0), t(0.0), beta=0.5)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2))
    assert pi2.grad.item() < 0
    # hand-computed value, and the same loss when the pair is written the other way round
    value = -math.log(sig(0.5 * ((-1 - -2) - (-3 - -2.5))))
    a = dpo_loss(t(-3.0), t(-1.0), t(-2.5), t(-2.0), t(2.0), t(1.0), beta=0.5).item()
    b = dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.5), t(1.0), t(2.0), beta=0.5).item()
    assert a == pytest.approx(value) and b == pytest.approx(value)
    # bounded below by 0; ties are skipped
    assert dpo_loss(t(0.0), t(50.0), t(0.0), t(0.0), t(1.0), t(0.0)).item() >= 0
    assert dpo_loss(t(0.0), t(1.0), t(0.0), t(0.0), t(1.0), t(1.0)).item() == 0.0


def test_dpo_has_no_finite_optimum_on_hard_preferences():
    """DPO's counterpart of ERA's fixed-point test: with the lower energy always preferred, loss and
    gradient fall towards zero as the preferred member's log-ratio margin grows, and never reach it —
    there is no finite target to match, which is why DPO concentrates on the better samples. The
    gradient is −β σ(−β m) on the preferred member's log-probability, +β σ(−β m) on the other's."""
    beta, last_loss, last_grad = 0.5, math.inf, math.inf
    for m in (0.0, 1.0, 5.0, 20.0, 60.0):
        pi2 = t(m).requires_grad_(True)  # y₂ preferred (lower energy); reference log-probs equal
        pi1 = t(0.0).requires_grad_(True)
        loss = dpo_loss(pi1, pi2, t(0.0), t(0.0), t(1.0), t(0.0), beta=beta)
        loss.backward()
        assert pi2.grad.item() == pytest.approx(-beta * sig(-beta * m), rel=1e-9)
        assert pi1.grad.item() == pytest.approx(beta * sig(-beta * m), rel=1e-9)
        assert 0 < loss.item() < last_loss and 0 < -pi2.grad.item() < last_grad
        last_loss, last_grad = loss.item(), -pi2.grad.item()


def test_nll():
    assert nll_loss(t(-1.0, -3.0)).item() == 2.0


# ---------------------------------------------------------------- pairs


@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_all_pairs_counts_and_no_self_pairs(n):
    i, j = all_pairs(n)
    assert len(i) == n_pairs(n) == n * (n - 1) // 2
    assert (i < j).all()
    assert len(set(zip(i.tolist(), j.tolist()))) == len(i)


def test_linear_index_mapping_matches_enumeration():
    n = 37
    i, j = all_pairs(n)
    li, lj = pair_from_linear(np.arange(n_pairs(n)), n)
    assert (li == i).all() and (lj == j).all()


def test_sampled_pairs_are_distinct_and_seeded():
    a = sample_pairs(1000, 5000, seed=3)
    b = sample_pairs(1000, 5000, seed=3)
    c = sample_pairs(1000, 5000, seed=4)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    assert not ((a[0] == c[0]).all() and (a[1] == c[1]).all())
    pairs = set(zip(a[0].tolist(), a[1].tolist()))
    assert len(pairs) == 5000 and all(i < j < 1000 for i, j in pairs)
    assert len(sample_pairs(4, 100)[0]) == 6  # asking for more than exist gives all of them


def test_identical_sequences_are_never_paired():
    seqs = ["CCO", "CCN", "CCO", "c1ccccc1", "CCN"]
    i, j = make_pairs(seqs)
    assert len(i) == 3  # three distinct sequences
    assert all(seqs[a] != seqs[b] for a, b in zip(i, j))
    assert len(make_pairs(["CCO", "CCO"])[0]) == 0
    assert len(make_pairs(2)[0]) == 1


# ------------------------------------------------------------------ one objective, pairs or expert updates
def _round(n=6, length=5, seed=0):
    from lightning_modules.policy_updates import Round

    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[0, -2:] = 0  # a shorter sequence: padding must not count
    return Round(input_ids=torch.randint(3, 20, (n, length), generator=g), attention_mask=mask,
                 energies=torch.randn(n, generator=g) * 3, old_token_logps=-torch.rand(n, length - 1, generator=g),
                 ref_token_logps=-torch.rand(n, length - 1, generator=g) * 2,
                 texts=[f"s{k}" for k in range(n)], made_at_step=3)


def test_era_update_is_the_era_objective_on_the_rounds_pairs():
    """ERAUpdate computes pair_losses.ERA (with all of ERA's options: max_shift, reverse_kl) on the
    pairs make_pairs draws from the round, sequence log-probs summed over real tokens only."""
    from lightning_modules.pair_losses import ERA
    from lightning_modules.policy_updates import ERAUpdate, PairUpdate

    batch = _round()
    token_logps = -torch.rand(6, 4, generator=torch.Generator().manual_seed(1)) * 3
    mask = batch.token_mask.float()
    logps, ref = (token_logps * mask).sum(-1), (batch.ref_token_logps * mask).sum(-1)
    i, j = map(torch.from_numpy, make_pairs(batch.texts, 7, 11 + batch.made_at_step))
    u = batch.energies
    for kwargs in ({}, {"max_shift": 0.5}, {"reverse_kl": True}):
        loss, stats = ERAUpdate(beta=4.0, gamma=1.0, max_pairs=7, seed=11, **kwargs).loss(token_logps, batch)
        expected = era_loss(logps[i], logps[j], ref[i], ref[j], u[i], u[j], 4.0, 1.0, **kwargs)
        assert torch.equal(loss, expected) and stats["pairs"] == 7.0
        same, _ = PairUpdate(ERA(4.0, 1.0, **kwargs), max_pairs=7, seed=11).loss(token_logps, batch)
        assert torch.equal(same, loss)
    clipped, _ = ERAUpdate(beta=4.0, gamma=1.0, max_pairs=7, seed=11, max_shift=0.01).loss(token_logps, batch)
    assert not torch.equal(clipped, ERAUpdate(beta=4.0, gamma=1.0, max_pairs=7, seed=11).loss(token_logps, batch)[0])


def test_dpo_is_an_expert_update_too():
    from lightning_modules.pair_losses import DPO
    from lightning_modules.policy_updates import PairUpdate

    batch = _round()
    token_logps = (-torch.rand(6, 4) * 3).requires_grad_()
    loss, stats = PairUpdate(DPO(0.5), max_pairs=None).loss(token_logps, batch)
    loss.backward()
    assert stats["pairs"] == 15.0 and token_logps.grad.abs().sum() > 0
    assert (token_logps.grad[0, -2:] == 0).all()  # padding gets no gradient


def test_sft_wrapper_adds_the_nll_of_the_better_member():
    from lightning_modules.pair_losses import DPO, ERA, WithSFT

    pi_1, pi_2, ref_1, ref_2 = t(-3.0, -5.0), t(-4.0, -2.0), t(-3.5, -4.0), t(-3.0, -2.5)
    u_1, u_2 = t(1.0, 0.0), t(2.0, -1.0)  # the better members: pi_1[0], pi_2[1]
    for base in (ERA(4.0, 1.0), DPO(0.2)):
        wrapped = WithSFT(base, 0.3)
        expected = base(pi_1, pi_2, ref_1, ref_2, u_1, u_2) + 0.3 * (3.0 + 2.0) / 2
        assert float(wrapped(pi_1, pi_2, ref_1, ref_2, u_1, u_2)) == pytest.approx(float(expected))
        assert wrapped.name == base.name + "+sft"


def test_rloo_from_the_samplers_sequence_logprobs_equals_the_per_token_pass():
    """RLOO needs only each sample's summed old log-prob: taken from the sampler (Round.old_logps)
    it gives the same loss as from the per-token pass, and the module asks the sampler for it."""
    from lightning_modules.policy_updates import PPO, RLOO

    batch = _round()
    token_logps = -torch.rand(6, 4, generator=torch.Generator().manual_seed(2), requires_grad=False) * 3
    per_token, _ = RLOO(kl_coef=0.3).loss(token_logps, batch)
    batch.old_logps = (batch.old_token_logps * batch.token_mask).sum(-1)
    batch.old_token_logps = None
    summed, _ = RLOO(kl_coef=0.3).loss(token_logps, batch)
    torch.testing.assert_close(summed, per_token)
    assert RLOO.old_logps == "sequence" and PPO.old_logps == "tokens"
