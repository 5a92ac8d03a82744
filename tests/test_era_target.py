"""The importance-sampling estimate of ERA's target π* ∝ exp(−β'U + γ' log π_ref)."""

import pytest
import torch

from lightning_modules.era_target import era_target_weights, estimate_target, main, mixed_pairs, pair_shifts


def _table(k=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref_logps = torch.log_softmax(torch.randn(k, generator=g, dtype=torch.float64) * 2, 0)
    energies = torch.rand(k, generator=g, dtype=torch.float64) * 3
    return ref_logps, energies


def _exact(ref_logps, energies, beta, gamma):
    bp, gp = beta / (1 + gamma), gamma / (1 + gamma)
    return torch.softmax(-bp * energies + gp * ref_logps, 0)


@pytest.mark.parametrize("beta,gamma", [(0.0, 0.0), (2.0, 0.0), (5.0, 1.0), (20.0, 9.0)])
def test_whole_support_under_a_uniform_proposal_gives_the_exact_target(beta, gamma):
    ref_logps, energies = _table()
    uniform = torch.full_like(ref_logps, -torch.log(torch.tensor(12.0, dtype=torch.float64)))
    w = era_target_weights(energies, ref_logps, beta, gamma, proposal_logps=uniform)
    torch.testing.assert_close(w, _exact(ref_logps, energies, beta, gamma))
    f = torch.arange(12, dtype=torch.float64)
    est = estimate_target({"f": f}, f >= 6, energies, ref_logps, beta, gamma, proposal_logps=uniform)
    pi = _exact(ref_logps, energies, beta, gamma)
    assert est.means["f"] == pytest.approx(float((pi * f).sum()), abs=1e-12)
    assert est.valid_mass == pytest.approx(float(pi[6:].sum()), abs=1e-12)
    assert est.effective_samples == pytest.approx(float(1 / (pi * pi).sum()), abs=1e-9)


def test_reference_samples_estimate_the_target_and_gamma_raises_the_effective_size():
    ref_logps, energies = _table()
    draws = torch.multinomial(ref_logps.exp(), 50_000, replacement=True, generator=torch.Generator().manual_seed(1))
    f = torch.arange(12, dtype=torch.float64)
    for beta, gamma in [(2.0, 0.0), (20.0, 9.0)]:
        est = estimate_target({"f": f[draws]}, torch.ones(len(draws), dtype=torch.bool), energies[draws],
                              ref_logps[draws], beta, gamma)
        exact = float((_exact(ref_logps, energies, beta, gamma) * f).sum())
        assert est.means["f"] == pytest.approx(exact, abs=0.1)
    low = estimate_target({}, torch.ones(len(draws), dtype=torch.bool), energies[draws], ref_logps[draws], 2.0, 0.0)
    high = estimate_target({}, torch.ones(len(draws), dtype=torch.bool), energies[draws], ref_logps[draws], 2.0, 9.0)
    assert high.effective_samples > low.effective_samples


def test_undefined_values_are_left_out_and_bad_inputs_are_errors():
    ref_logps, energies = _table(4)
    values = torch.tensor([1.0, float("nan"), 3.0, 5.0], dtype=torch.float64)
    est = estimate_target({"v": values}, torch.tensor([1, 0, 1, 1]), energies, ref_logps, 1.0, 1.0)
    assert 1.0 <= est.means["v"] <= 5.0
    with pytest.raises(ValueError, match="non-finite"):
        era_target_weights(torch.tensor([0.0, float("nan")]), torch.zeros(2), 1.0, 0.0)
    with pytest.raises(ValueError, match="empty"):
        era_target_weights(torch.zeros(0), torch.zeros(0), 1.0, 0.0)
    with pytest.raises(ValueError, match=">= 0"):
        era_target_weights(torch.zeros(2), torch.zeros(2), -1.0, 0.0)


def test_command_line_reads_an_offline_sample_set(tmp_path, capsys):
    import pandas as pd

    from lightning_modules.era_target import main

    ref_logps, energies = _table(6)
    path = tmp_path / "samples.parquet"
    pd.DataFrame({"sequence": list("abcdef"), "energy": energies.numpy(), "ref_logprob": ref_logps.numpy(),
                  "valid": [True] * 5 + [False], "value_qed": [0.1, 0.2, 0.3, 0.4, 0.5, float("nan")]}).to_parquet(path)
    main([str(path), "--beta", "0", "4", "--gamma", "1"])
    out = capsys.readouterr().out
    assert "| β | γ | qed | energy | valid mass | effective samples |" in out
    rows = [line for line in out.splitlines() if line.startswith("| 0 |") or line.startswith("| 4 |")]
    assert len(rows) == 2
    pd.DataFrame({"sequence": ["a"]}).to_parquet(path)
    with pytest.raises(SystemExit, match="lacks"):
        main([str(path), "--beta", "1"])


def test_pair_shift_is_the_distance_of_the_target_odds_from_the_reference_odds():
    # β = 200, γ = 9: β' = 20, γ' = 0.9. Pair (0, 1): ΔU = 4.5 − 0.5, Δ log π_ref = −30 − (−10):
    # ℓ* − ℓ_ref = −20·4 + (0.9 − 1)·(−20) = −78
    energies = torch.tensor([0.5, 4.5, 0.6], dtype=torch.float64)
    ref_logps = torch.tensor([-10.0, -30.0, -12.0], dtype=torch.float64)
    shifts = pair_shifts(energies, ref_logps, 200.0, 9.0, torch.tensor([0, 0]), torch.tensor([1, 2]))
    assert shifts.tolist() == pytest.approx([78.0, 2.0 - 0.2], rel=1e-12)
    # β = γ = 0 asks for even odds: the pair moves by its whole reference log-odds, 20 nats
    assert pair_shifts(energies, ref_logps, 0.0, 0.0, torch.tensor([0]), torch.tensor([1])).item() == pytest.approx(20.0)


def test_mixed_pairs_pair_each_valid_with_each_invalid_or_a_seeded_sample():
    valid = torch.tensor([True, False, True, True, False])
    good, bad = mixed_pairs(valid)
    assert sorted(zip(good.tolist(), bad.tolist())) == [(0, 1), (0, 4), (2, 1), (2, 4), (3, 1), (3, 4)]
    some = mixed_pairs(valid, max_pairs=4, seed=3)
    assert len(some[0]) == 4
    assert all(valid[some[0]]) and not any(valid[some[1]])
    assert [t.tolist() for t in mixed_pairs(valid, max_pairs=4, seed=3)] == [t.tolist() for t in some]
    assert len(mixed_pairs(torch.ones(3, dtype=torch.bool))[0]) == 0


def test_command_line_rescores_invalid_samples(tmp_path, capsys):
    import pandas as pd

    path = tmp_path / "samples.parquet"
    pd.DataFrame({"energy": [0.2, 0.3, 4.5], "ref_logprob": [-10.0, -10.0, -9.0], "valid": [True, True, False],
                  "value_qed": [0.8, 0.7, float("nan")]}).to_parquet(path)
    main([str(path), "--beta", "200", "--gamma", "9"])
    main([str(path), "--beta", "200", "--gamma", "9", "--invalid-energy", "0.5"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 200 ")]
    # shifts |−20·ΔU − 0.1·Δref| of the mixed pairs (0, 2) and (1, 2): 86.1 and 84.1 (median 85.1,
    # 90 % 85.9); with the invalid sample at U = 0.5: 6.1 and 4.1 (5.1, 5.9)
    assert rows[0].endswith("| 85.1 / 85.9 |") and rows[1].endswith("| 5.1 / 5.9 |")
