"""benchmarks/era_beta_curve.py on hand-made summary.json files (the writer's keys are checked in
tests/test_alignment.py): seed averages, the monotonicity check, and refusing mixed curves."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import era_beta_curve  # noqa: E402


def _run(root: Path, beta: float, seed: int, energy: float, valid_mean=None) -> Path:
    out = root / f"b{beta:g}_seed{seed}"
    out.mkdir()
    summary = {"step": 300, "seed": seed,
               "objective": {"class": "lightning_modules.pair_losses.ERA", "beta": beta, "gamma": 9.0},
               "reference": {"property/qed/mean": 0.81, "energy/mean": 0.4 + seed / 100, "energy/valid_mean": None,
                             "samples/validity": 0.95, "samples/kl_to_reference": 0.0},
               "policy": {"property/qed/mean": 0.8 + beta / 10000, "energy/mean": energy,
                          "energy/valid_mean": valid_mean, "samples/validity": 0.97, "samples/kl_to_reference": 1.0}}
    (out / "summary.json").write_text(json.dumps(summary))
    return out


def test_seed_means_monotonicity_and_plot(tmp_path, capsys):
    runs = [_run(tmp_path, 20, 0, 0.30), _run(tmp_path, 20, 1, 0.34, 0.2), _run(tmp_path, 200, 0, 0.25),
            _run(tmp_path, 200, 1, 0.27), _run(tmp_path, 2000, 0, 0.29)]
    (tmp_path / "unfinished").mkdir()  # no summary.json: skipped
    table = era_beta_curve.load(runs + [tmp_path / "unfinished"])
    assert len(table) == 5 and set(table.beta_prime) == {2.0, 20.0, 200.0}
    assert math.isnan(table.loc[0, "ref energy/valid_mean"]) and table.loc[table.seed == 1, "energy/valid_mean"].iloc[0] == 0.2
    means = era_beta_curve.across_seeds(table)
    assert means["energy/mean"].tolist() == pytest.approx([0.32, 0.26, 0.29])
    assert means["seeds"].tolist() == [2, 2, 1]
    assert not era_beta_curve.non_increasing(means["energy/mean"])
    assert era_beta_curve.non_increasing(-means["property/qed/mean"])  # QED rises with β here
    era_beta_curve.main([*map(str, runs), "--csv", str(tmp_path / "t.csv"), "--out", str(tmp_path / "b.png")])
    assert (tmp_path / "b.png").stat().st_size > 0 and (tmp_path / "t.csv").is_file()
    assert "non-increasing in β: False" in capsys.readouterr().out


def test_mixed_gamma_is_refused(tmp_path):
    a = _run(tmp_path, 20, 0, 0.3)
    b = _run(tmp_path, 50, 0, 0.3)
    summary = json.loads((b / "summary.json").read_text())
    summary["objective"]["gamma"] = 0.0
    (b / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(SystemExit, match="one method and one γ"):
        era_beta_curve.main([str(a), str(b), "--out", str(tmp_path / "b.png")])


def test_a_named_summary_file_is_read_instead(tmp_path, capsys):
    """``--summary`` reads era_reevaluate.py's files (``summary_n…_seed….json``) and ignores summary.json."""
    runs = [_run(tmp_path, 20, 0, 0.30), _run(tmp_path, 200, 0, 0.25)]
    with pytest.raises(SystemExit, match="no summary_n10_seed1.json"):
        era_beta_curve.load(runs, "summary_n10_seed1.json")
    for run, energy in zip(runs, (0.35, 0.20)):
        summary = json.loads((run / "summary.json").read_text())
        summary["policy"]["energy/mean"] = energy
        (run / "summary_n10_seed1.json").write_text(json.dumps(summary))
    assert era_beta_curve.load(runs, "summary_n10_seed1.json")["energy/mean"].tolist() == [0.35, 0.20]
    era_beta_curve.main([*map(str, runs), "--summary", "summary_n10_seed1.json", "--out", str(tmp_path / "b.png")])
    assert "non-increasing in β: True" in capsys.readouterr().out


def _table(energies: dict[int, list[float]], betas=(2.0, 5.0, 10.0, 20.0)):
    import pandas as pd

    return pd.DataFrame([{"seed": seed, "beta_prime": b, "energy/mean": e}
                         for seed, values in energies.items() for b, e in zip(betas, values)])


def test_page_trend_test_finds_a_fall_that_the_means_do_not_show():
    """Within every seed the energy falls but for one swap, and one seed is offset: the seed means
    are not monotone, yet the within-seed order is there (Page's L test); rising and shuffled
    energies are not called a fall, and incomplete seeds are left out."""
    falling = _table({0: [0.30, 0.28, 0.29, 0.25], 1: [0.40, 0.37, 0.35, 0.34], 2: [0.31, 0.29, 0.27, 0.26],
                      3: [0.33, 0.32, 0.30, 0.31]})
    test = era_beta_curve.falls_with_beta(falling)
    assert test["seeds"] == 4 and test["betas"] == 4 and test["pvalue"] < 0.01
    rising = falling.assign(**{"energy/mean": -falling["energy/mean"]})
    assert era_beta_curve.falls_with_beta(rising)["pvalue"] > 0.9
    flat = _table({0: [0.3, 0.2, 0.4, 0.1], 1: [0.1, 0.4, 0.2, 0.3], 2: [0.2, 0.3, 0.1, 0.4]})
    assert era_beta_curve.falls_with_beta(flat)["pvalue"] > 0.2
    incomplete = falling[~((falling.seed >= 1) & (falling.beta_prime == 20.0))]
    assert era_beta_curve.falls_with_beta(incomplete) is None  # one complete seed is not a test


def test_rows_of_an_earlier_table_join_new_runs(tmp_path, capsys):
    """``--rows`` continues a sweep whose run directories are gone: earlier rows plus new runs, a run
    present in both read from its directory."""
    old = [_run(tmp_path, b, 0, e) for b, e in ((20, 0.30), (200, 0.28), (2000, 0.27))]
    era_beta_curve.main([*map(str, old), "--csv", str(tmp_path / "old.csv"), "--out", str(tmp_path / "a.png")])
    new_root = tmp_path / "new"
    new_root.mkdir()
    new = [_run(new_root, b, 1, e) for b, e in ((20, 0.33), (200, 0.31), (2000, 0.29))]
    again = _run(new_root, 2000, 0, 0.10)  # b2000_seed0 again: its directory wins over the old row
    capsys.readouterr()
    era_beta_curve.main([*map(str, new + [again]), "--rows", str(tmp_path / "old.csv"),
                         "--csv", str(tmp_path / "both.csv"), "--out", str(tmp_path / "b.png")])
    out = capsys.readouterr().out
    import pandas as pd

    both = pd.read_csv(tmp_path / "both.csv")
    assert len(both) == 6 and sorted(both.seed.unique()) == [0, 1]
    assert both.loc[(both.seed == 0) & (both.beta == 2000), "energy/mean"].item() == pytest.approx(0.10)
    assert "falls with β' (Page's L test, 2 seeds × 3 β')" in out
    era_beta_curve.main(["--rows", str(tmp_path / "both.csv"), "--out", str(tmp_path / "c.png")])  # rows alone
    with pytest.raises(SystemExit, match="no summary.json"):
        era_beta_curve.main([str(tmp_path / "nothing"), "--out", str(tmp_path / "d.png")])
