"""benchmarks/kinase_era.py on tiny data: the sets, the run plan and its resumption, the CSV."""

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import kinase_era  # noqa: E402

REFERENCE = ROOT / "tests" / "data" / "tdc_reference_predictions.csv"  # TDC's own probabilities


def test_split_is_seeded_disjoint_and_independent_of_order():
    smiles = [f"C{'C' * k}O" for k in range(40)]
    train, held = kinase_era.split_set(smiles, 0.1, seed=0)
    again = kinase_era.split_set(list(reversed(smiles)) + smiles[:5], 0.1, seed=0)  # order, repeats
    assert (train, held) == again
    assert len(held) == 4 and set(train) | set(held) == set(smiles) and not set(train) & set(held)
    assert kinase_era.split_set(smiles, 0.1, seed=1)[1] != held


def test_sets_hold_exactly_the_molecules_above_threshold(tmp_path):
    ref = pd.read_csv(REFERENCE)
    active = ref.sort_values("jnk3", ascending=False)["smiles"].head(12).tolist()
    inactive = ref.sort_values("jnk3")["smiles"].head(6).tolist()
    assert (ref.set_index("smiles").loc[active, "jnk3"] > 0.5).sum() >= 10  # the test needs actives
    chembl = {"train": active[:6] + inactive[:3] + ["not-a-smiles", active[0]], "valid": active[6:9] + inactive[3:]}
    excape = tmp_path / "excape"
    (excape / "jnk3").mkdir(parents=True)
    (excape / "gsk3").mkdir()
    # one molecule labelled both 0 and 1 (ExCAPE has such rows): it counts as a known active
    pd.DataFrame({"smiles": active[9:] + [inactive[0], inactive[0]], "jnk3": [1, 1, 1, 0, 1]}).to_csv(
        excape / "jnk3" / "all.txt", index=False)
    pd.DataFrame({"smiles": inactive[:2], "gsk3": [0, 1]}).to_csv(excape / "gsk3" / "all.txt", index=False)

    counts = kinase_era.make_sets(tmp_path / "out", excape, held_out=0.25, seed=0, chembl=chembl)

    scores = pd.read_csv(tmp_path / "out" / "scores.csv.gz")
    truth = dict(zip(ref["smiles"], ref["jnk3"]))
    canon = {kinase_era.canonical_unique([s])[0]: truth[s] for s in truth if kinase_era.canonical_unique([s])}
    assert np.allclose(scores["jnk3"], scores["smiles"].map(canon), atol=1e-9)  # TDC's numbers
    above = {s for s, p in canon.items() if p > 0.5 and s in set(scores["smiles"])}
    train = kinase_era.read_lines(tmp_path / "out" / "jnk3_finetune_train.txt")
    held = kinase_era.read_lines(tmp_path / "out" / "jnk3_finetune_heldout.txt")
    assert set(train) | set(held) == above and not set(train) & set(held)
    assert len(held) == round(0.25 * len(above))
    distinct = set(kinase_era.canonical_unique(chembl["train"] + chembl["valid"]))
    assert counts["chembl_all"]["molecules"] == len(distinct) <= 15  # 17 strings, one invalid, one repeat
    assert counts["sources"]["chembl_train"]["molecules"] == len(set(kinase_era.canonical_unique(chembl["train"])))
    assert counts["chembl_all"]["jnk3_above"] == sum(canon[s] > 0.5 for s in distinct) > 0
    known = kinase_era.read_lines(tmp_path / "out" / "jnk3_known_actives.txt")
    assert set(known) == set(kinase_era.canonical_unique(active[9:] + [inactive[0]]))
    assert counts["jnk3"]["known_actives_from"].startswith("excape")
    assert json.loads((tmp_path / "out" / "sets.json").read_text()) == counts


def test_missing_excape_file_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="jnk3/all.txt"):
        kinase_era.read_excape(tmp_path, "jnk3")


def test_plan_composes_configs_and_resumes(tmp_path):
    runs = kinase_era.plan("jnk3", [50.0, 200.0], [0, 1], 9.0, tmp_path / "root", tmp_path / "sets", "prior-dir")
    assert [r.name for r in runs] == ["finetune_jnk3", "era_jnk3_b50_s0", "era_jnk3_b200_s0",
                                      "era_jnk3_b50_s1", "era_jnk3_b200_s1"]
    for run in runs:
        for config in run.configs:
            assert (ROOT / config).is_file(), config
        assert run.configs[-1].startswith("configs/kinase/")
    era = runs[3].command(tmp_path / "root")
    assert era[era.index("--model.init_args.objective.init_args.beta") + 1] == "50"
    assert era[era.index("--model.init_args.seed") + 1] == "1"
    # the βs of one seed share its scored reference samples; seeds do not
    datasets = {r.name: r.overrides[r.overrides.index("--model.init_args.dataset_path") + 1] for r in runs[1:]}
    assert datasets["era_jnk3_b50_s0"] == datasets["era_jnk3_b200_s0"] != datasets["era_jnk3_b50_s1"]
    assert era[era.index("--trainer.default_root_dir") + 1] == str(tmp_path / "root" / "era_jnk3_b50_s1")
    assert "--ckpt_path" not in era
    last = tmp_path / "root" / "era_jnk3_b50_s1" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    assert runs[3].command(tmp_path / "root")[-2:] == ["--ckpt_path", str(last)]
    assert not runs[3].finished(tmp_path / "root")
    (last.parents[1] / "eval.json").write_text("{}")
    assert runs[3].finished(tmp_path / "root")


def test_table_orders_rows_and_keeps_the_columns(tmp_path):
    rows = [{"run": "era_jnk3_b200_s0", "stage": "era", "beta": 200.0, "seed": 0, "mean_score": 0.2},
            {"run": "prior", "stage": "prior", "mean_score": 0.01},
            {"run": "era_jnk3_b50_s0", "stage": "era", "beta": 50.0, "seed": 0, "mean_score": 0.1},
            {"run": "reference", "stage": "reference", "mean_score": 0.05}]
    for row in rows:
        (tmp_path / row["run"]).mkdir()
        (tmp_path / row["run"] / "eval.json").write_text(json.dumps(row))
    frame = kinase_era.table(tmp_path, tmp_path / "out.csv")
    assert frame["run"].tolist() == ["prior", "reference", "era_jnk3_b50_s0", "era_jnk3_b200_s0"]
    written = pd.read_csv(tmp_path / "out.csv")
    assert list(written.columns) == kinase_era.CSV_COLUMNS + kinase_era.BAR_COLUMNS
    assert written["mean_score"].tolist() == [0.01, 0.05, 0.1, 0.2]
    # validity is a count over the samples: a float32 value of 1,800/2,000 is read back as 0.9
    row = {"run": "era_online_s1", "stage": "era_online", "beta": 50.0, "seed": 1, "n_samples": 2000,
           "validity": 0.8999999761581421}
    (tmp_path / row["run"]).mkdir()
    (tmp_path / row["run"] / "eval.json").write_text(json.dumps(row))
    assert kinase_era.table(tmp_path, tmp_path / "out.csv").set_index("run").loc["era_online_s1", "validity"] == 0.9



def test_trend_over_beta_uses_complete_seeds_and_the_stated_direction():
    """frac_above_0.5 rising with β in both seeds → small one-sided p for 'rises'; validity rising
    too → large p for 'falls'; a seed missing a β is left out of the test, not of the means."""
    rows = [{"run": "reference", "stage": "reference", "frac_above_0.5": 0.1}]
    for seed in (0, 1):
        for k, beta in enumerate([50.0, 100.0, 200.0, 400.0]):
            rows.append({"run": f"era_b{beta}_s{seed}", "stage": "era", "beta": beta, "gamma": 9.0, "seed": seed,
                         "frac_above_0.5": 0.2 + 0.05 * k + 0.01 * seed, "validity": 0.6 + 0.01 * k,
                         "mean_score": 0.2, "intdiv1": 0.8, "kl_to_reference": float(k)})
    rows.append({"run": "era_b50_s2", "stage": "era", "beta": 50.0, "gamma": 9.0, "seed": 2, "frac_above_0.5": 0.5})
    frame = pd.DataFrame(rows)
    tests = kinase_era.trend_tests(frame).set_index("metric")
    assert tests.loc["frac_above_0.5", "seeds"] == 2 and tests.loc["frac_above_0.5", "pvalue"] < 0.01
    assert tests.loc["validity", "pvalue"] > 0.9 and tests.loc["kl_to_reference", "pvalue"] < 0.01
    summary = kinase_era.across_seeds(frame).set_index("beta")
    assert summary.loc[50.0, "seeds"] == 3 and summary.loc[50.0, "frac_above_0.5"] == pytest.approx((0.2 + 0.21 + 0.5) / 3)
    assert summary.loc[400.0, "frac_above_0.5 se"] == pytest.approx(0.005, rel=1e-6)  # sd 0.00707 over 2 seeds
    assert kinase_era.trend_tests(frame[frame.seed != 1]).empty  # one complete seed: no test

def _bar_frame():
    """A reference at 0.2 above 0.5 (IntDiv1 0.85) and one run per way of missing issue 28's bar."""
    good = {"frac_above_0.5": 0.45, "validity": 0.91, "uniqueness": 0.99, "intdiv1": 0.82}
    misses = {"ok": {}, "fold": {"frac_above_0.5": 0.39}, "validity": {"validity": 0.899},
              "uniqueness": {"uniqueness": 0.85}, "intdiv1": {"intdiv1": 0.79}, "unknown": {"validity": np.nan}}
    rows = [{"run": "reference", "stage": "reference", "frac_above_0.5": 0.2, "validity": 0.7, "uniqueness": 1.0,
             "intdiv1": 0.85, "kl_to_reference": 0.0}]
    for seed, (name, change) in enumerate(misses.items()):
        rows.append({"run": name, "stage": "era_online", "beta": 50.0, "gamma": 9.0, "seed": seed,
                     "mean_score": 0.4, "kl_to_reference": 1.5, **good, **change})
    return pd.DataFrame(rows)


def test_the_bar_is_judged_against_the_reference_term_by_term():
    frame = kinase_era.bar(_bar_frame()).set_index("run")
    assert frame.loc["ok", "bar_met"] and frame.loc["ok", "fold_vs_reference"] == pytest.approx(2.25)
    for name in ("fold", "validity", "uniqueness", "intdiv1"):
        assert not frame.loc[name, "bar_met"], name
    assert pd.isna(frame.loc["unknown", "bar_met"]) and pd.isna(frame.loc["reference", "bar_met"])
    assert kinase_era.across_seeds(frame.reset_index()).loc[0, "bar_met_seeds"] == 1
    # without a reference nothing is judged
    assert kinase_era.bar(_bar_frame().iloc[1:])["bar_met"].isna().all()


def test_summary_puts_every_target_on_one_page(tmp_path):
    prior = {"run": "prior", "stage": "prior", "frac_above_0.5": 0.01, "validity": 0.8, "uniqueness": 1.0,
             "intdiv1": 0.87, "kl_to_reference": 0.0}
    jnk3 = pd.concat([pd.DataFrame([prior]), _bar_frame()], ignore_index=True)
    jnk3.to_csv(tmp_path / "jnk3.csv", index=False)
    gsk3b = _bar_frame().assign(stage=lambda f: f.stage.where(f.run == "reference", "dpo"), gamma=np.nan, beta=1.0)
    gsk3b.loc[gsk3b.run == "reference", "frac_above_0.5"] = 0.1  # every run now at least doubles it
    gsk3b.to_csv(tmp_path / "gsk3b.csv", index=False)
    out = tmp_path / "summary.csv"
    kinase_era.main(["summary", "--table", f"jnk3={tmp_path / 'jnk3.csv'}", f"gsk3b={tmp_path / 'gsk3b.csv'}",
                     "--csv", str(out), "--plot", str(tmp_path / "summary.png")])
    frame = pd.read_csv(out).set_index(["target", "objective"])
    assert frame.loc[("jnk3", "era_online"), "seeds"] == 6 and frame.loc[("jnk3", "era_online"), "bar_met_seeds"] == 1
    # before and after fine-tuning: the prior's row beside the reference's (gsk3b's table has no prior)
    assert frame.loc[("jnk3", "prior"), "fold_vs_reference"] == pytest.approx(0.05) and ("gsk3b", "prior") not in frame.index
    assert frame.loc[("gsk3b", "dpo"), "bar_met_seeds"] == 2  # "fold" now passes: 0.39 ≥ 2 × 0.1
    assert frame.loc[("gsk3b", "dpo"), "fold_vs_reference"] == pytest.approx(frame.loc[("gsk3b", "dpo"), "frac_above_0.5"] / 0.1)
    assert (tmp_path / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit):  # the output may not overwrite an input
        kinase_era.main(["summary", "--table", f"jnk3={out}", "--csv", str(out)])
    with pytest.raises(SystemExit):
        kinase_era.main(["summary", "--table", "kras=x.csv", "--csv", str(out)])


def test_nearest_similarity_is_one_for_an_active_itself():
    sims = kinase_era.nearest_similarity(["CCOc1ccccc1", "CCCCCCCC"], ["CCOc1ccccc1", "c1ccncc1"])
    assert sims[0] == 1.0 and 0.0 <= sims[1] < 0.5
    assert np.isnan(kinase_era.nearest_similarity(["CCO"], [])).all()


def test_scores_file_is_gzip(tmp_path):
    ref = pd.read_csv(REFERENCE)
    kinase_era.make_sets(tmp_path, None, chembl={"train": ref["smiles"].head(5).tolist()})
    with gzip.open(tmp_path / "scores.csv.gz", "rt") as handle:
        assert handle.readline().startswith("smiles,source")
    counts = json.loads((tmp_path / "sets.json").read_text())
    assert counts["jnk3"]["known_actives_from"].startswith("the fine-tuning set")


def test_dpo_baseline_runs_on_eras_pairs_with_its_own_objective(tmp_path):
    runs = kinase_era.plan("jnk3", [0.1], [0, 1], 9.0, tmp_path / "root", tmp_path / "sets", "prior-dir", "dpo")
    assert [r.name for r in runs[1:]] == ["dpo_jnk3_b0.1_s0", "dpo_jnk3_b0.1_s1"]
    assert {r.stage for r in runs[1:]} == {"dpo"} and np.isnan(runs[1].gamma)
    era = kinase_era.plan("jnk3", [100.0], [0], 9.0, tmp_path / "root", tmp_path / "sets", "prior-dir")
    dataset = lambda r: r.overrides[r.overrides.index("--model.init_args.dataset_path") + 1]  # noqa: E731
    assert dataset(runs[1]) == dataset(era[1])  # the same scored samples, so the same pairs
    cmd = runs[1].command(tmp_path / "root")
    objective = json.loads(cmd[cmd.index("--model.init_args.objective") + 1])
    assert objective == {"class_path": "lightning_modules.pair_losses.DPO", "init_args": {"beta": 0.1}}
    assert "--model.init_args.objective.init_args.gamma" not in cmd  # ERA's γ is not passed to DPO
    with pytest.raises(ValueError, match="objective"):
        kinase_era.plan("jnk3", [1.0], [0], 9.0, tmp_path, tmp_path, "prior", "ppo")


def test_dpo_is_compared_with_era_at_the_same_mean_score_or_kl():
    """ERA's metrics are interpolated along its βs of the same seed at the DPO run's score (or KL);
    a value outside ERA's range is not extrapolated."""
    other = ["frac_above_0.5", "uniqueness", "intdiv1", "nearest_active_sim_median"]
    rows = []
    for seed in (0, 1):
        for beta, score, validity, kl in [(50.0, 0.2, 0.8, 1.0), (100.0, 0.3, 0.7, 2.0), (200.0, 0.4, 0.6, 4.0)]:
            rows.append({"run": f"era_b{beta}_s{seed}", "stage": "era", "beta": beta, "gamma": 9.0, "seed": seed,
                         "mean_score": score + 0.01 * seed, "validity": validity, "kl_to_reference": kl,
                         **{k: 1.0 for k in other}})
        rows.append({"run": f"dpo_b0.1_s{seed}", "stage": "dpo", "beta": 0.1, "seed": seed,
                     "mean_score": 0.25 + 0.01 * seed, "validity": 0.5, "kl_to_reference": 3.0,
                     **{k: 2.0 for k in other}})
    rows.append({"run": "dpo_b1_s0", "stage": "dpo", "beta": 1.0, "seed": 0, "mean_score": 0.9, "validity": 0.1,
                 "kl_to_reference": 0.5, **{k: 2.0 for k in other}})
    frame = pd.DataFrame(rows)
    matched = kinase_era.at_matched(frame).set_index("run")
    assert matched.loc["dpo_b0.1_s0", "era validity"] == pytest.approx(0.75)  # halfway from β 50 to 100
    assert matched.loc["dpo_b0.1_s1", "diff validity"] == pytest.approx(-0.25)
    assert matched.loc["dpo_b0.1_s0", "diff kl_to_reference"] == pytest.approx(1.5)  # ERA's KL there: 1.5
    assert np.isnan(matched.loc["dpo_b1_s0", "era validity"])  # beyond ERA's highest score
    by_kl = kinase_era.at_matched(frame, "kl_to_reference").set_index("run")
    assert by_kl.loc["dpo_b0.1_s0", "era mean_score"] == pytest.approx(0.35)  # halfway from KL 2 to 4
    assert np.isnan(by_kl.loc["dpo_b1_s0", "era validity"])  # below ERA's lowest KL
    # the reference, where every run starts (KL 0), is the first point of ERA's curve
    with_origin = pd.concat([frame, pd.DataFrame([{"run": "reference", "stage": "reference", "mean_score": 0.1,
                                                   "validity": 0.9, **{k: 1.0 for k in other}}])])
    by_kl = kinase_era.at_matched(with_origin, "kl_to_reference").set_index("run")
    assert by_kl.loc["dpo_b1_s0", "era validity"] == pytest.approx(0.85)  # halfway from KL 0 to 1
    assert by_kl.loc["dpo_b1_s0", "path_points"] == 4
    # a path that rises and falls again is matched on its first crossing, not on a segment joining
    # βs that are not neighbours
    bent = pd.DataFrame([{"run": f"era_b{b}_s0", "stage": "era", "beta": b, "gamma": 9.0, "seed": 0, "mean_score": m,
                          "validity": v, "kl_to_reference": k, **{x: 1.0 for x in other}}
                         for b, m, v, k in [(50.0, 0.2, 0.9, 1.0), (100.0, 0.4, 0.7, 2.0), (400.0, 0.3, 0.5, 4.0)]]
                        + [{"run": "dpo_b1_s0", "stage": "dpo", "beta": 1.0, "seed": 0, "mean_score": 0.3,
                            "validity": 0.6, "kl_to_reference": 1.0, **{x: 1.0 for x in other}}])
    assert kinase_era.at_matched(bent).loc[0, "era validity"] == pytest.approx(0.8)  # β 50→100, not 100→400
    both = pd.concat([kinase_era.at_matched(frame, on) for on in kinase_era.MATCH_ON])
    summary = kinase_era.matched_summary(both).set_index(["matched_on", "beta"])
    assert summary.loc[("mean_score", 0.1), "pairs"] == 2 and summary.loc[("mean_score", 1.0), "pairs"] == 0
    assert summary.loc[("mean_score", 0.1), "diff validity"] == pytest.approx(-0.25)
    assert summary.loc[("kl_to_reference", 0.1), "diff mean_score"] == pytest.approx(-0.10)
    with pytest.raises(ValueError, match="on must be"):
        kinase_era.at_matched(frame, "validity")
    by = kinase_era.across_seeds(frame)
    assert by.objective.tolist() == ["era", "era", "era", "dpo", "dpo"]
    # an ERA run at another γ is summarised apart and is not part of the path DPO is matched on
    off = pd.concat([frame, pd.DataFrame([{"run": "era_b75_g99_s0", "stage": "era", "beta": 75.0, "gamma": 99.0,
                                           "seed": 0, "mean_score": 0.25, "validity": 0.0, "kl_to_reference": 1.5,
                                           **{k: 1.0 for k in other}}])])
    assert kinase_era.at_matched(off).set_index("run").loc["dpo_b0.1_s0", "era validity"] == pytest.approx(0.75)
    assert len(kinase_era.across_seeds(off)) == 6


def test_an_era_run_at_another_gamma_is_named_apart(tmp_path):
    runs = kinase_era.plan("jnk3", [1000.0], [0], 99.0, tmp_path, tmp_path, "prior")
    assert runs[1].name == "era_jnk3_b1000_g99_s0" and runs[1].gamma == 99.0
    assert kinase_era.plan("jnk3", [100.0], [0], kinase_era.SWEEP_GAMMA, tmp_path, tmp_path, "prior")[1].name == "era_jnk3_b100_s0"


def test_gsk3b_composes_over_the_jnk3_recipe_in_its_own_root(tmp_path):
    runs = kinase_era.plan("gsk3b", [100.0], [0], 9.0, tmp_path / "root", tmp_path / "sets", "prior-dir")
    finetune, era = runs
    assert finetune.configs[-2:] == ["configs/kinase/jnk3_finetune.yaml", "configs/kinase/gsk3b_finetune.yaml"]
    assert "configs/era/tasks/gsk3b.yaml" in era.configs and era.configs[-1] == "configs/kinase/gsk3b_era.yaml"
    assert era.name == "era_gsk3b_b100_s0"
    assert era.overrides[era.overrides.index("--model.init_args.novelty_reference") + 1].endswith("gsk3b_finetune_train.txt")
    # its prior and reference rows are scored on GSK3β, so they must not share JNK3's folder
    assert kinase_era.default_root("gsk3b") != kinase_era.default_root("jnk3")


def test_the_path_plot_is_written(tmp_path):
    rows = [{"run": "reference", "stage": "reference", "mean_score": 0.18, "validity": 0.7}]
    for seed in (0, 1):
        for k, beta in enumerate([50.0, 100.0]):
            rows.append({"run": f"era_b{beta}_s{seed}", "stage": "era", "beta": beta, "gamma": 9.0, "seed": seed,
                         "mean_score": 0.25 + 0.03 * k, "validity": 0.7 - 0.05 * k, "kl_to_reference": 1.0 + k})
        rows.append({"run": f"dpo_b1_s{seed}", "stage": "dpo", "beta": 1.0, "gamma": np.nan, "seed": seed,
                     "mean_score": 0.3, "validity": 0.72, "kl_to_reference": 1.5})
    out = kinase_era.plot_paths(pd.DataFrame(rows), tmp_path / "img" / "paths.png")
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_online_runs_draw_their_own_rounds_with_the_offline_recipe(tmp_path):
    """--mode online composes the online config last, has no shared offline sample set, and is a
    stage of its own: summarised, trend-tested and matched against offline ERA apart."""
    online = kinase_era.plan("jnk3", [100.0], [0], 9.0, tmp_path, tmp_path, "prior", online=True)[1]
    offline = kinase_era.plan("jnk3", [100.0], [0], 9.0, tmp_path, tmp_path, "prior")[1]
    assert online.name == "era_online_jnk3_b100_s0" and online.stage == "era_online"
    assert online.configs == [*offline.configs, kinase_era.ONLINE_CONFIG] and (ROOT / kinase_era.ONLINE_CONFIG).is_file()
    assert "--model.init_args.dataset_path" not in online.overrides
    # everything else the offline run is told, the online run is told too
    shared = [x for x in offline.overrides if "dataset_path" not in x and "samples_s0.parquet" not in x]
    assert online.overrides == shared
    dpo = kinase_era.plan("jnk3", [1.0], [2], 9.0, tmp_path, tmp_path, "prior", "dpo", online=True)[1]
    assert dpo.name == "dpo_online_jnk3_b1_s2" and dpo.stage == "dpo_online"

    rows = [{"run": "reference", "stage": "reference", "mean_score": 0.1, "validity": 0.7, "kl_to_reference": 0.0}]
    for stage, lift in (("era", 0.0), ("era_online", 0.2)):
        for seed in (0, 1):
            for k, beta in enumerate([50.0, 100.0, 200.0]):
                rows.append({"run": f"{stage}_b{beta}_s{seed}", "stage": stage, "beta": beta, "gamma": 9.0,
                             "seed": seed, "mean_score": 0.2 + 0.1 * k, "frac_above_0.5": 0.2 + 0.1 * k,
                             "validity": 0.7 + lift - 0.05 * k, "intdiv1": 0.8, "kl_to_reference": 1.0 + k,
                             "uniqueness": 1.0, "nearest_active_sim_median": 0.3})
    frame = pd.DataFrame(rows)
    tests = kinase_era.trend_tests(frame)
    assert set(tests.stage) == {"era", "era_online"} and len(tests) == 2 * len(kinase_era.TRENDS)
    assert kinase_era.across_seeds(frame).objective.tolist() == ["era"] * 3 + ["era_online"] * 3
    matched = kinase_era.at_matched(frame, "mean_score", "era_online").set_index("run")
    assert matched.loc["era_online_b100.0_s0", "diff validity"] == pytest.approx(0.2)  # same score, +0.2 valid
    # online DPO is matched along online ERA's own path when asked
    dpo = pd.DataFrame([{"run": "dpo_online_s0", "stage": "dpo_online", "beta": 1.0, "seed": 0, "mean_score": 0.25,
                         "frac_above_0.5": 0.25, "validity": 0.5, "intdiv1": 0.8, "kl_to_reference": 0.5,
                         "uniqueness": 1.0, "nearest_active_sim_median": 0.3}])
    vs_online = kinase_era.at_matched(pd.concat([frame, dpo]), "mean_score", "dpo_online", "era_online").iloc[0]
    assert vs_online["era validity"] == pytest.approx(0.875) and vs_online["era kl_to_reference"] == pytest.approx(1.5)
    table_dir = tmp_path / "table"
    for row in rows[::-1]:
        (table_dir / row["run"]).mkdir(parents=True)
        (table_dir / row["run"] / "eval.json").write_text(json.dumps(row))
    ordered = kinase_era.table(table_dir, tmp_path / "out.csv")
    assert ordered.stage.tolist() == ["reference"] + ["era"] * 6 + ["era_online"] * 6
    out = kinase_era.plot_paths(frame, tmp_path / "online.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dual_target_counts_samples_above_on_both_kinases(tmp_path):
    """The dual set is the molecules above 0.5 on both; its score is the kinases' mean and its
    'above' needs both; its runs compose its own configs over the JNK3 recipe."""
    ref = pd.read_csv(REFERENCE)
    smiles = ref["smiles"].tolist()
    score, above, per = kinase_era.target_scores(smiles + ["not-a-smiles"], "dual")
    assert np.allclose(per["jnk3"][:-1], ref["jnk3"], atol=1e-9) and np.allclose(per["gsk3b"][:-1], ref["gsk3b"], atol=1e-9)
    assert per["jnk3"][-1] == 0.0 and score[-1] == 0.0 and not above[-1]
    assert np.allclose(score[:-1], (ref["jnk3"] + ref["gsk3b"]) / 2)
    assert above[:-1].tolist() == ((ref["jnk3"] > 0.5) & (ref["gsk3b"] > 0.5)).tolist()
    single, single_above, _ = kinase_era.target_scores(smiles, "gsk3b")
    assert np.allclose(single, ref["gsk3b"]) and single_above.tolist() == (ref["gsk3b"] > 0.5).tolist()

    frame = pd.DataFrame({"smiles": ["CCO", "CCN", "CCC", "CCCl"], "jnk3": [0.9, 0.9, 0.2, 0.6],
                          "gsk3b": [0.7, 0.3, 0.9, 0.51]})
    kinase_era.write_lines(tmp_path / "jnk3_known_actives.txt", ["CCO"])
    kinase_era.write_lines(tmp_path / "gsk3b_known_actives.txt", ["CCC", "CCO"])
    counts = kinase_era.make_dual_set(frame, tmp_path, held_out=0.0)
    assert kinase_era.read_lines(tmp_path / "dual_finetune_train.txt") == ["CCCl", "CCO"]
    assert kinase_era.read_lines(tmp_path / "dual_known_actives.txt") == ["CCC", "CCO"]
    assert counts["finetune_set"] == 2 and counts["known_actives"] == 2

    finetune, era = kinase_era.plan("dual", [100.0], [0], 9.0, tmp_path / "root", tmp_path, "prior")
    assert finetune.configs[-1] == "configs/kinase/dual_finetune.yaml" and era.configs[-1] == "configs/kinase/dual_era.yaml"
    assert "configs/era/tasks/dual.yaml" in era.configs and all((ROOT / c).is_file() for c in finetune.configs + era.configs)
    assert kinase_era.default_root("dual") == ROOT / "runs" / "kinase_dual"


def test_a_stronger_invalid_term_is_a_variant_kept_out_of_the_sweep(tmp_path):
    run = kinase_era.plan("jnk3", [100.0], [1], 9.0, tmp_path, tmp_path, "prior", online=True, invalid_weight=3.0)[1]
    assert run.name == "era_online_jnk3_b100_iw3_s1" and run.variant == "iw3"
    assert run.overrides[run.overrides.index("--model.init_args.invalid_weight") + 1] == "3"
    assert "--model.init_args.invalid_weight" not in kinase_era.plan("jnk3", [100.0], [1], 9.0, tmp_path, tmp_path, "prior")[1].overrides
    rows = [{"run": f"era_online_b{b}_s{s}", "stage": "era_online", "beta": b, "gamma": 9.0, "variant": "", "seed": s,
             "frac_above_0.5": 0.1 * k, "mean_score": 0.1 * k, "validity": 0.9, "intdiv1": 0.8, "kl_to_reference": k}
            for s in (0, 1) for k, b in enumerate([50.0, 100.0, 200.0])]
    rows += [{**rows[1], "run": "era_online_b100_iw3_s0", "variant": "iw3", "validity": 0.95}]
    frame = pd.DataFrame(rows)
    assert len(kinase_era.main_sweep(frame, "era_online")) == 6
    by = kinase_era.across_seeds(frame)
    assert by[by.variant == "iw3"].validity.tolist() == [0.95] and len(by) == 4
    tests = kinase_era.trend_tests(frame)
    assert (tests.seeds == 2).all()
    assert kinase_era.main_sweep(frame.drop(columns="variant"), "era_online").shape[0] == 7  # old rows: the sweep


def test_runs_get_the_stated_threads_and_rows_name_their_weights(tmp_path, monkeypatch):
    """Each training subprocess gets ``--threads`` through OMP_NUM_THREADS (the runs' float
    rounding depends on it), and each row records the thread count and a digest of the weights it
    measured, so a CSV row can be told apart from one made on a regenerated model."""
    import hashlib
    import subprocess

    import torch

    sets, root, prior = tmp_path / "sets", tmp_path / "root", tmp_path / "prior"
    sets.mkdir()
    for name in ("jnk3_finetune_train.txt", "jnk3_known_actives.txt"):
        (sets / name).write_text("CCO\n")
    prior.mkdir()
    (prior / "model.safetensors").write_bytes(b"prior weights")
    envs = []

    def fake_run(cmd, cwd, stdout, stderr, env):  # a training run that exports distinct weights
        envs.append(env)
        out = Path(cmd[cmd.index("--trainer.default_root_dir") + 1]) / "pretrained"
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(out.parent.name.encode())
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(kinase_era.subprocess, "run", fake_run)
    monkeypatch.setattr(kinase_era, "evaluate", lambda *a, **k: {"n_samples": 4, "validity": 0.5})
    threads = torch.get_num_threads()
    try:
        kinase_era.main(["run", "--root", str(root), "--sets", str(sets), "--prior", str(prior),
                         "--betas", "50", "--seeds", "0", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert len(envs) == 2 and all(e["OMP_NUM_THREADS"] == "1" == e["MKL_NUM_THREADS"] for e in envs)
    rows = {p.parent.name: json.loads(p.read_text()) for p in root.glob("*/eval.json")}
    assert set(rows) == {"prior", "finetune_jnk3", "reference", "era_jnk3_b50_s0"}
    assert all(r["threads"] == 1 for r in rows.values())
    assert rows["prior"]["weights_sha256"] == hashlib.sha256(b"prior weights").hexdigest()[:16]
    assert rows["era_jnk3_b50_s0"]["weights_sha256"] == hashlib.sha256(b"era_jnk3_b50_s0").hexdigest()[:16]
    assert rows["reference"]["weights_sha256"] == rows["finetune_jnk3"]["weights_sha256"] != rows["prior"]["weights_sha256"]
    frame = kinase_era.table(root, tmp_path / "k.csv")
    assert list(pd.read_csv(tmp_path / "k.csv").columns) == kinase_era.CSV_COLUMNS + kinase_era.BAR_COLUMNS
    assert frame["weights_sha256"].nunique() == 3


def test_table_writes_a_matched_comparison_only_against_a_stage_that_ran(tmp_path):
    """A root with online ERA alone (no offline ERA path) writes no online-vs-offline matching;
    a root with both does."""
    root = tmp_path / "root"
    rows = [{"run": "reference", "stage": "reference", "mean_score": 0.1, "validity": 0.7, "kl_to_reference": 0.0}]
    rows += [{"run": f"era_online_b{b:g}_s{s}", "stage": "era_online", "beta": b, "gamma": 9.0, "seed": s,
              "mean_score": 0.2 + b / 1000, "frac_above_0.5": 0.2, "validity": 0.9, "intdiv1": 0.8, "uniqueness": 1.0,
              "kl_to_reference": 1.0 + b / 100, "nearest_active_sim_median": 0.3} for b in (50.0, 100.0) for s in (0, 1)]
    for row in rows:
        (root / row["run"]).mkdir(parents=True)
        (root / row["run"] / "eval.json").write_text(json.dumps(row))
    csv = tmp_path / "k.csv"
    kinase_era.main(["table", "--root", str(root), "--csv", str(csv)])
    assert not (tmp_path / "k_era_online_matched.csv").exists() and (tmp_path / "k_by_beta.csv").is_file()
    offline = [{**r, "run": r["run"].replace("era_online", "era"), "stage": "era",
                "mean_score": r["mean_score"] - 0.05} for r in rows[1:]]
    for row in offline:
        (root / row["run"]).mkdir(parents=True)
        (root / row["run"] / "eval.json").write_text(json.dumps(row))
    kinase_era.main(["table", "--root", str(root), "--csv", str(csv)])
    matched = pd.read_csv(tmp_path / "k_era_online_matched.csv")
    assert len(matched) == 8 and matched["era validity"].notna().any()
    # without --csv the table lands beside the runs it collects, not over a committed results file
    kinase_era.main(["table", "--root", str(root)])
    assert (root / "kinase_jnk3.csv").is_file() and (root / "kinase_jnk3_by_beta.csv").is_file()


def test_plan_passes_the_priors_record_transform_to_fine_tuning_only(tmp_path):
    plain = kinase_era.plan("jnk3", [50.0], [0], 9.0, tmp_path, tmp_path, "prior")
    assert "--data.init_args.transform" not in plain[0].command(tmp_path)
    runs = kinase_era.plan("jnk3", [50.0], [0], 9.0, tmp_path, tmp_path, "prior", transform="fresh_ring_labels")
    finetune = runs[0].command(tmp_path)
    assert finetune[finetune.index("--data.init_args.transform") + 1] == "fresh_ring_labels"
    assert "--data.init_args.transform" not in runs[1].command(tmp_path)  # ERA samples its own policy


def test_nearest_keeps_the_whole_similarity_distribution(tmp_path, monkeypatch):
    """``nearest`` histograms each run's distinct valid samples by similarity to the nearest known
    active (a copy lands in the last bin, which includes 1), refuses a model whose weights changed
    since its eval.json, and in a shared CSV replaces only the rows of its own target and runs."""
    from types import SimpleNamespace

    from networks.files import weights_digest

    sets, root = tmp_path / "sets", tmp_path / "root"
    sets.mkdir()
    (sets / "jnk3_known_actives.txt").write_text("CCOc1ccccc1\nc1ccncc1\n")
    model = root / "run_a" / "pretrained"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"weights a")
    (root / "run_a" / "eval.json").write_text(json.dumps({"model": str(model), "weights_sha256": weights_digest(model),
                                                          "nearest_active_sim_median": 0.5}))
    texts = ["CCOc1ccccc1", "CCOc1ccccc1", "CCCCCCCC", "C1CC"]  # a copy twice, a new molecule, an invalid one
    monkeypatch.setattr(kinase_era, "evaluation_draw", lambda *a, **k: SimpleNamespace(texts=texts))
    csv = tmp_path / "near.csv"
    pd.DataFrame([{c: ("gsk3b" if c == "target" else 0) for c in kinase_era.NEAREST_COLUMNS}]).to_csv(csv, index=False)
    kinase_era.main(["nearest", "--root", str(root), "--sets", str(sets), "--runs", "run_a", "--csv", str(csv),
                     "--plot", str(tmp_path / "near.png")])
    frame = pd.read_csv(csv)
    assert sorted(frame.target) == ["gsk3b", "jnk3"]  # the other target's row is kept
    row = frame[frame.target == "jnk3"].iloc[0]
    assert row.n_valid_distinct == 2 and row["bin_0.95"] == 1 and row[kinase_era.BIN_COLUMNS].sum() == 2
    low = kinase_era.nearest_similarity(["CCCCCCCC"], ["CCOc1ccccc1", "c1ccncc1"])[0]
    assert row["median"] == pytest.approx((1.0 + low) / 2, abs=1e-4)
    assert (tmp_path / "near.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # seeds pool by run name without _s<seed>: one copy of the two distinct valid samples
    pooled = kinase_era.pool_nearest(pd.concat([row.to_frame().T.assign(run=f"era_s{k}") for k in (0, 1)]))
    assert pooled.loc[0, "objective"] == "era" and pooled.loc[0, "seeds"] == 2
    assert pooled.loc[0, "share >= 0.95"] == pytest.approx(0.5) and pooled.loc[0, "bin_0.95"] == 2
    assert (tmp_path / "near_pooled.csv").is_file()
    (model / "model.safetensors").write_bytes(b"retrained")  # not the model eval.json measured
    with pytest.raises(SystemExit, match="not the model"):
        kinase_era.main(["nearest", "--root", str(root), "--sets", str(sets), "--runs", "run_a", "--csv", str(csv)])


def test_nearest_reads_the_histogram_an_eval_json_keeps(tmp_path, monkeypatch):
    """An evaluation since the histogram is kept in eval.json (``nearest_active_hist``): ``nearest``
    reads it rather than drawing the samples again, takes every evaluated run when ``--runs`` is
    left out (prior and reference first; not the fine-tuning row, the reference's model again), carries each run's stage, β and KL, and pools seeds
    with mean ± s.e. of the KL."""
    sets, root = tmp_path / "sets", tmp_path / "root"
    sets.mkdir()
    (sets / "jnk3_known_actives.txt").write_text("CCOc1ccccc1\n")
    near = kinase_era.nearest_record(np.array([0.12, 0.33, 0.97, np.nan, 1.0]))
    assert near["n_valid_distinct"] == 4 and near["bin_0.95"] == 2 and near["bin_0.10"] == 1
    assert near["median"] == pytest.approx((0.33 + 0.97) / 2)
    runs = {"reference": ("reference", None, 0.0, ""), "era_jnk3_b50_s0": ("era", 50.0, 1.0, ""),
            "era_jnk3_b50_s1": ("era", 50.0, 3.0, ""), "finetune_jnk3": ("finetune", None, 9.0, ""),
            "era_jnk3_b50_iw3_s0": ("era", 50.0, 2.0, "iw3")}
    for name, (stage, beta, kl, variant) in runs.items():
        (root / name).mkdir(parents=True)
        (root / name / "eval.json").write_text(json.dumps({
            "stage": stage, "beta": beta, "gamma": 9.0 if stage == "era" else None, "variant": variant,
            "kl_to_reference": kl, "model": "nowhere",
            "nearest_active_sim_median": near["median"], "nearest_active_sim_q90": near["q90"],
            "nearest_active_hist": [near[c] for c in kinase_era.BIN_COLUMNS]}))

    def no_draw(*args, **kwargs):
        raise AssertionError("drew samples although eval.json keeps the histogram")

    monkeypatch.setattr(kinase_era, "evaluation_draw", no_draw)
    csv = tmp_path / "near.csv"
    kinase_era.main(["nearest", "--root", str(root), "--sets", str(sets), "--csv", str(csv),
                     "--plot", str(tmp_path / "near.png")])
    frame = pd.read_csv(csv)
    assert list(frame.run) == ["reference", "era_jnk3_b50_iw3_s0", "era_jnk3_b50_s0", "era_jnk3_b50_s1"]
    assert (frame.n_valid_distinct == 4).all() and (frame["bin_0.95"] == 2).all()
    assert frame.set_index("run").loc["era_jnk3_b50_s1", "kl_to_reference"] == 3.0
    pooled = pd.read_csv(tmp_path / "near_pooled.csv").set_index("objective")
    assert pooled.loc["era_jnk3_b50", "stage"] == "era" and pooled.loc["era_jnk3_b50", "beta"] == 50.0
    assert pooled.loc["era_jnk3_b50", "kl_to_reference"] == pytest.approx(2.0)
    assert pooled.loc["era_jnk3_b50", "kl_to_reference se"] == pytest.approx(1.0)
    # the plot's stage paths are the main sweeps: the invalid-weight variant is kept out, as in the summary
    main = kinase_era.in_main_sweep(pooled.reset_index())
    assert main.tolist() == [row != "era_jnk3_b50_iw3" for row in pooled.index]
    assert (tmp_path / "near.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    kept = json.loads((root / "reference" / "eval.json").read_text())
    # a histogram of another draw (other n or top-k than asked for) is not taken for this one
    (root / "reference" / "eval.json").write_text(json.dumps({**kept, "n_samples": 2000, "top_k": 0}))
    with pytest.raises(AssertionError, match="drew samples"):
        kinase_era.main(["nearest", "--root", str(root), "--sets", str(sets), "--csv", str(csv), "--top-k", "5"])
    kinase_era.main(["nearest", "--root", str(root), "--sets", str(sets), "--csv", str(csv), "--top-k", "0"])
    (root / "reference" / "eval.json").write_text(json.dumps({**kept, "nearest_active_hist": [1, 2]}))
    with pytest.raises(SystemExit, match="bins"):
        kinase_era.main(["nearest", "--root", str(root), "--sets", str(sets), "--csv", str(csv)])
    (root / "reference" / "eval.json").write_text(json.dumps({**kept, "nearest_active_sim_median": None,
                                                               "nearest_active_hist": [0] * len(kinase_era.BIN_COLUMNS)}))
    kinase_era.main(["nearest", "--root", str(root), "--sets", str(sets), "--csv", str(csv)])  # no valid sample: no crash
    assert pd.read_csv(csv).set_index("run").loc["reference", "n_valid_distinct"] == 0


def test_table_takes_the_share_of_close_analogues_from_the_histogram(tmp_path):
    """``table`` turns each eval.json's nearest-active histogram into the share of samples at
    similarity ≥ 0.7 (a column the matched comparisons and the per-β summary carry); a run
    evaluated before the histogram was kept gets NaN, not 0."""
    hist = [0] * len(kinase_era.BIN_COLUMNS)
    hist[kinase_era.BIN_COLUMNS.index("bin_0.30")] = 6
    hist[kinase_era.BIN_COLUMNS.index("bin_0.70")] = 3
    hist[-1] = 1
    rows = {"reference": {"stage": "reference", "nearest_active_hist": hist},
            "era_jnk3_b50_s0": {"stage": "era", "beta": 50.0, "gamma": 9.0, "seed": 0}}
    for name, row in rows.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "eval.json").write_text(json.dumps({"run": name, "frac_above_0.5": 0.1, **row}))
    frame = kinase_era.table(tmp_path, tmp_path / "t.csv").set_index("run")
    assert frame.loc["reference", kinase_era.CLOSE_ANALOGUES] == pytest.approx(0.4)
    assert np.isnan(frame.loc["era_jnk3_b50_s0", kinase_era.CLOSE_ANALOGUES])
    assert kinase_era.CLOSE_ANALOGUES in kinase_era.MATCHED and kinase_era.CLOSE_ANALOGUES in kinase_era.SUMMARISED
    assert kinase_era.share_at_least(np.array([hist, [0] * len(hist)]), 0.95)[0] == pytest.approx(0.1)
    assert np.isnan(kinase_era.share_at_least(np.array([[0] * len(hist)]), 0.7)[0])
