"""The Iterative RS paper's protocol for IRS, Rewarded Soups and MORLHF, resumable, with a report.

    python benchmarks/mo_protocol.py run [--tasks qm9_tri dna_3cell] [--seeds 0 1 2 3 4] [--methods irs rs morlhf supervised]
    python benchmarks/mo_protocol.py report

``run`` trains every (task, seed, method) at uniform w from ``configs/multi_objective/<task>.yaml``
plus ``<method>.yaml`` (T = 100 steps, 128 samples per expert per step, m = 4, M = 2 of N = 3,
Adam 1.41e-5, PPO with a KL penalty; the configs say the details), one ``main.py fit`` at a time,
in task, then seed, then method order. Each run writes its evaluations (``callbacks.mo_eval``:
step 0, every k steps, the end) to ``<runs>/<task>/<method>_s<seed>/evals.csv``; when it
finishes, its rows go into ``--csv`` (default ``docs/results/mo_protocol.csv``, rewritten
atomically) and the report is rebuilt. A run whose final row (step T) is already in the CSV is
skipped, so the command can be stopped at any point (a session ending, a kill) and started again:
the run that was cut short resumes from its ``checkpoints/last.ckpt`` (the protocol configs save
one every 10 steps; the module's rounds, merges and counters are restored exactly), its evaluations
after that step are dropped and redone; without a readable checkpoint it is redone from step 0
(its partial evaluations kept aside as ``evals.interrupted.csv``). A run that finished training
but was never recorded is collected from its ``evals.csv``. Runners may work side by side on different seeds or methods: each marks
the run it trains (``running.pid``) and the others skip it.

``report`` rebuilds from the CSV: a summary table at each run's last step (mean ± standard error
over seeds of the average reward, per-objective rewards, balance, KL, validity, …;
``<csv stem>_summary.csv`` and ``.md``), paired tests over seeds (same seed = same sampling
stream: the evaluation samples and the module's round generators are seeded by the run's seed)
of IRS vs RS and IRS vs MORLHF on the average reward — paired t-test and Wilcoxon signed-rank —,
the same comparison at matched KL (``<csv stem>_matched_kl.csv``: the other run's reward read off its
own reward–KL curve at IRS's final KL, same seed)
and two figures per task in ``--img-dir``: ``<csv stem>_<task>_kl.png`` (average reward against
KL to the reference) and ``<csv stem>_<task>_oracle.png`` (against oracle calls).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from seed_stats import mean_se, paired  # noqa: E402  (benchmarks/, beside this file)

#: each task's configs under configs/multi_objective, in order (a base, then its variant's override)
TASK_CONFIGS = {"qm9_tri": ["qm9_tri.yaml"], "dna_3cell": ["dna_3cell.yaml"],
                "qm9_tri_in_domain": ["qm9_tri.yaml", "in_domain.yaml"]}
TASKS = tuple(TASK_CONFIGS)
#: each method's overrides of configs/multi_objective/<task>.yaml, in order
METHOD_CONFIGS = {"irs": ["irs.yaml"], "rs": ["rs.yaml"], "morlhf": ["morlhf.yaml"], "supervised": ["supervised.yaml"],
                  "irs_era": ["irs.yaml", "era.yaml"]}
METHODS = tuple(METHOD_CONFIGS)
#: ERA's β per task (γ = 9, configs/multi_objective/era.yaml): β' = β / 10 times a typical energy gap ≈ 1 —
#: qm9_tri's energies are in σ (gaps ~1), dna_3cell's are probabilities (gaps ~0.05). A first choice, not tuned.
ERA_BETA = {"qm9_tri": 10.0, "dna_3cell": 200.0}
UNIFORM = "0.3333/0.3333/0.3333"  # the w label callbacks.mo_eval writes for uniform weights over 3 objectives
KEY = ["task", "method", "w", "seed"]


# --------------------------------------------------------------------------- running
def finished(csv: Path, task: str, method: str, seed: int, steps: int, w: str = UNIFORM) -> bool:
    """Whether ``csv`` holds the final (step ``steps``) row of this run."""
    if not csv.is_file():
        return False
    frame = pd.read_csv(csv, usecols=["task", "method", "w", "seed", "step"], dtype={"w": str})
    hit = ((frame.task == task) & (frame.method == method) & (frame.w == w) & (frame.seed == seed)
           & (frame.step == steps))
    return bool(hit.any())


@contextlib.contextmanager
def locked(csv: Path):
    """Hold a lock file for ``csv`` (in the temporary directory, named by the CSV's absolute path,
    so none lands in the repository) exclusively: runners started side by side never interleave
    their read-modify-write of the results file."""
    csv.parent.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(str(csv.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"mo_protocol-{key}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def claim(run_dir: Path) -> bool:
    """Mark ``run_dir`` as being trained by this process; False when a live runner holds it
    (several runners may share the queue: ``run --seeds 0 2 4`` beside ``run --seeds 1 3``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    marker = run_dir / "running.pid"
    try:
        pid = int(marker.read_text().strip())
        if pid != os.getpid():
            os.kill(pid, 0)
            return False
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass
    except PermissionError:  # alive, another user's
        return False
    marker.write_text(f"{os.getpid()}\n")
    return True


def add_rows(csv: Path, rows: pd.DataFrame) -> None:
    """Append a finished run's rows to ``csv`` (replacing any earlier rows of the same run),
    written to a temporary file and renamed, so a kill mid-write never truncates the results."""
    with locked(csv):
        _add_rows(csv, rows)


def _add_rows(csv: Path, rows: pd.DataFrame) -> None:
    frame = rows
    if csv.is_file():
        old = pd.read_csv(csv, dtype={"w": str})
        keys = rows[KEY].drop_duplicates()
        stale = old.merge(keys, on=KEY, how="left", indicator=True)["_merge"].eq("both").to_numpy()
        frame = pd.concat([old[~stale], rows], ignore_index=True)
    frame = frame.sort_values(["task", "method", "seed", "step"], kind="stable")
    csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv.with_name(csv.name + ".tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, csv)


def command(task: str, method: str, seed: int, steps: int, run_dir: Path, python: str,
            ckpt: Path | None = None) -> list[str]:
    configs = ROOT / "configs" / "multi_objective"
    overrides = [a for name in METHOD_CONFIGS[method] for a in ("--config", str(configs / name))]
    files = TASK_CONFIGS.get(task, [f"{task}.yaml"])
    base = [a for name in files for a in ("--config", str(configs / name))]
    era = ["--model.init_args.update.init_args.beta", str(ERA_BETA[Path(files[0]).stem])] if method.endswith("_era") else []
    return [python, str(ROOT / "main.py"), "fit", *base, *overrides, *era,
            "--seed_everything", str(seed), "--model.init_args.seed", str(seed), "--trainer.max_steps", str(steps),
            "--trainer.default_root_dir", str(run_dir), *(["--ckpt_path", str(ckpt)] if ckpt else [])]


def resume_point(run_dir: Path, steps: int) -> tuple[Path, int] | None:
    """``(last.ckpt, its step)`` of a run cut short, or None when there is nothing to resume: no
    checkpoint, an unreadable (truncated) one, or one from a run longer than ``steps``."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    import torch

    try:
        step = int(torch.load(last, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except Exception as err:  # noqa: BLE001 — any unreadable file means: start again
        print(f"  {last} is not readable ({type(err).__name__}: {err}); starting again", flush=True)
        return None
    return (last, step) if 0 < step <= steps else None  # = steps: killed in the final evaluation


def labelled_as(rows: pd.DataFrame, task: str, method: str, evals: Path) -> bool:
    """Whether a run's evaluation rows carry the task and method it was run as; recording rows
    labelled otherwise would replace another method's rows of the same seed."""
    if set(rows.method) == {method} and set(rows.task) == {task}:
        return True
    print(f"  {evals} labels its rows {sorted(set(rows.method))} / {sorted(set(rows.task))}, not {method} / {task}; "
          "not recorded (see callbacks.mo_eval.method_of)", flush=True)
    return False


def run_one(task: str, method: str, seed: int, steps: int, runs: Path, csv: Path, python: str) -> bool:
    run_dir = runs / task / f"{method}_s{seed}"
    evals = run_dir / "evals.csv"
    if not claim(run_dir):
        print(f"{task} {method} seed {seed}: another runner is training it, skipped", flush=True)
        return False
    if evals.is_file() and (pd.read_csv(evals, usecols=["step"]).step == steps).any():
        # trained to the end, but its runner stopped before recording it: collect, do not retrain
        rows = pd.read_csv(evals, dtype={"w": str})
        if not labelled_as(rows, task, method, evals):
            return False
        rows["run_wall_s"] = rows.wall_s.max()  # from training start (the process start is not known)
        add_rows(csv, rows)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        (run_dir / "running.pid").unlink(missing_ok=True)
        print(f"{task} {method} seed {seed}: finished earlier, collected from {evals}", flush=True)
        return True
    resume = resume_point(run_dir, steps) if evals.is_file() else None
    if resume is not None:  # cut short after a checkpoint: go on from it, redo the evaluations after it
        rows = pd.read_csv(evals, dtype={"w": str})
        kept = rows[rows.step <= resume[1]]
        tmp = evals.with_name(evals.name + ".tmp")
        kept.to_csv(tmp, index=False)
        tmp.replace(evals)
    else:
        if evals.is_file():  # an earlier attempt was cut short: keep its rows aside, start again
            shutil.move(evals, run_dir / "evals.interrupted.csv")
        if (run_dir / "checkpoints").exists():  # and its checkpoints (main.py refuses to mix two runs')
            shutil.rmtree(run_dir / "checkpoints.interrupted", ignore_errors=True)
            shutil.move(run_dir / "checkpoints", run_dir / "checkpoints.interrupted")
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONUNBUFFERED="1")
    started = time.monotonic()
    what = f"resuming from step {resume[1]}" if resume else "training"
    print(f"[{time.strftime('%H:%M:%S')}] {task} {method} seed {seed}: {what} ({run_dir}/train.log)", flush=True)
    with (run_dir / "train.log").open("a" if resume else "w") as log:
        rc = subprocess.call(command(task, method, seed, steps, run_dir, python, resume[0] if resume else None),
                             stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    wall = time.monotonic() - started
    if rc != 0 or not evals.is_file():
        tail = (run_dir / "train.log").read_text(errors="replace").splitlines()[-15:]
        print(f"  failed (exit {rc}) after {wall:.0f} s; last lines of the log:\n    " + "\n    ".join(tail), flush=True)
        if resume is not None:  # never retry the same resume forever: the next attempt starts from step 0
            for name in ("checkpoints", "evals.csv"):
                shutil.rmtree(run_dir / f"{name}.failed-resume", ignore_errors=True)
                if (run_dir / name).exists():
                    (run_dir / name).replace(run_dir / f"{name}.failed-resume")
            print(f"  the resumed attempt failed: {run_dir}/checkpoints and evals.csv moved to *.failed-resume", flush=True)
        return False
    rows = pd.read_csv(evals, dtype={"w": str})
    if not (rows.step == steps).any():
        print(f"  {evals} has no step-{steps} row; not recorded", flush=True)
        return False
    if not labelled_as(rows, task, method, evals):
        return False
    # a resumed run: training seconds carried through its checkpoints (PolicyEvaluation's wall_s;
    # the time between the last checkpoint and the kill is lost), else this process's wall time
    rows["run_wall_s"] = round(float(rows.wall_s.max()) if resume else wall, 1)
    rows["resumed_from_step"] = resume[1] if resume else 0
    add_rows(csv, rows)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # only for resuming; ~100–200 MB a run
    (run_dir / "running.pid").unlink(missing_ok=True)
    print(f"  done in {wall / 60:.1f} min; rows added to {csv}", flush=True)
    return True


def run(args) -> None:
    csv = Path(args.csv)
    for task in args.tasks:
        for seed in args.seeds:
            for method in args.methods:
                if finished(csv, task, method, seed, args.steps):
                    print(f"{task} {method} seed {seed}: in {csv}, skipped", flush=True)
                    continue
                if run_one(task, method, seed, args.steps, Path(args.runs), csv, args.python):
                    with locked(csv):
                        report(csv, Path(args.img_dir), quiet=True, runs=Path(args.runs))


# --------------------------------------------------------------------------- report
def final_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Each run's last evaluation (its output policy at step T)."""
    last = frame.groupby(KEY)["step"].transform("max")
    return frame[frame.step == last]


SUMMARY_COLUMNS = ["average_reward", "reward_sd", "balance_cv", "icv", "kl", "samples/validity",
                   "samples/uniqueness", "samples/intdiv1", "samples/outside_domain", "oracle_calls", "expert_updates",
                   "run_wall_s"]


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error over seeds, per task, method and w, at each run's last step."""
    last = final_rows(frame)
    columns = [c for c in SUMMARY_COLUMNS if c in last] + sorted(c for c in last if c.startswith("reward/"))
    rows = []
    for (task, method, w), group in last.groupby(["task", "method", "w"], sort=True):
        row = {"task": task, "method": method, "w": w, "seeds": int(group.seed.nunique()), "step": int(group.step.max()),
               "precision": ",".join(sorted(set(map(str, group.get("precision", pd.Series(["?"])))))) }
        for column in columns:
            row[column], row[f"{column} se"] = mean_se(group[column])
            row[f"{column} n"] = int(pd.to_numeric(group[column], errors="coerce").notna().sum())
        rows.append(row)
    return pd.DataFrame(rows)


def paired_tests(frame: pd.DataFrame, column: str = "average_reward", against=("rs", "morlhf", "supervised"),
                 method: str = "irs", required=("rs", "morlhf")) -> pd.DataFrame:
    """IRS − other on ``column`` paired by seed (same task, same w): mean difference, paired
    t-test and Wilcoxon signed-rank p-values (two-sided; NaN with fewer than 2 pairs, or when
    every difference is 0). A ``required`` comparison always has a row (0 pairs says it is
    missing); an optional one (the supervised baseline) only once it has pairs."""
    last = final_rows(frame)
    rows = []
    for (task, w), group in last.groupby(["task", "w"], sort=True):
        mine = group[group.method == method].set_index("seed")[column]
        for other in against:
            theirs = group[group.method == other].set_index("seed")[column]
            seeds = sorted(set(mine.index) & set(theirs.index))
            if not seeds and other not in required:
                continue
            diff = (mine.loc[seeds] - theirs.loc[seeds]).to_numpy(dtype=float)
            rows.append({"task": task, "w": w, "comparison": f"{method} - {other}", "metric": column,
                         "pairs": len(seeds), **paired(diff)})
    return pd.DataFrame(rows)


def matched_kl_tests(frame: pd.DataFrame, column: str = "average_reward", against=("rs", "morlhf", "supervised"),
                     method: str = "irs") -> pd.DataFrame:
    """The comparison at matched distance from the reference: for each seed, IRS's final
    ``column`` minus the other method's at the same KL, read off the other run's own reward–KL
    curve (same seed; linear interpolation between its evaluations, KL sorted). A seed counts only
    where IRS's final KL lies within the other curve's range. Paired t-test and Wilcoxon as in
    :func:`paired_tests`."""
    rows = []
    for (task, w), group in frame.groupby(["task", "w"], sort=True):
        mine = final_rows(group[group.method == method]).set_index("seed")
        for other in against:
            curves = group[group.method == other]
            if curves.empty:
                continue
            diffs, kls = [], []
            for seed, row in mine.iterrows():
                curve = curves[curves.seed == seed].dropna(subset=["kl", column]).sort_values("kl")
                if len(curve) < 2 or not curve.kl.min() <= row.kl <= curve.kl.max():
                    continue
                diffs.append(float(row[column]) - float(np.interp(row.kl, curve.kl, curve[column])))
                kls.append(float(row.kl))
            rows.append({"task": task, "w": w, "comparison": f"{method} - {other} at {method}'s final KL",
                         "metric": column, "pairs": len(diffs), "kl_mean": float(np.mean(kls)) if kls else float("nan"),
                         **paired(np.asarray(diffs))})
    return pd.DataFrame(rows)


def matched_kl_markdown(tests: pd.DataFrame) -> str:
    if tests.empty:
        return ""
    lines = ["", "At matched KL: IRS's final average reward minus the other method's at the same KL, read off "
             "that run's own reward–KL curve (same seed):", "",
             "| task | comparison | pairs | mean KL | mean difference | IRS wins | paired t p | Wilcoxon p |",
             "|---|---|---|---|---|---|---|---|"]
    for _, t in tests.iterrows():
        lines.append(f"| {t.task} | {t.comparison} | {t.pairs} | {t.kl_mean:.2f} | {t.mean_diff:+.4f} | "
                     f"{t.wins}/{t.pairs} | {t.t_p:.3g} | {t.wilcoxon_p:.3g} |")
    return "\n".join(lines) + "\n"


def _fmt(mean: float, se: float, digits: int = 3) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {se:.{digits}f}" if np.isfinite(se) else f"{mean:.{digits}f}"


def _cell(r: pd.Series, column: str, digits: int = 3) -> str:
    """Mean ± s.e. of ``column`` in summary row ``r``, saying over how many seeds when that is fewer
    than the row's (a metric added after some of the runs were made)."""
    text = _fmt(r.get(column, np.nan), r.get(f"{column} se", np.nan), digits)
    n = r.get(f"{column} n", np.nan)
    if text != "–" and np.isfinite(n) and 0 < n < r.seeds:
        text += f" ({int(n)} of {int(r.seeds)} seeds)"
    return text


def markdown(summary: pd.DataFrame, tests: pd.DataFrame) -> str:
    objectives = sorted(c[:-3] for c in summary if c.startswith("reward/") and c.endswith(" se"))
    domain = "samples/outside_domain" in summary and summary["samples/outside_domain"].notna().any()
    head = (["task", "method", "seeds", "average reward", "reward sd", "KL", "validity", "IntDiv1"]
            + (["outside domain"] if domain else []) + ["oracle calls", "min / run"] + [o.split("/")[-1] for o in objectives])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary.iterrows():
        cells = [r.task, r.method, str(r.seeds), _cell(r, "average_reward"), _cell(r, "reward_sd"),
                 _cell(r, "kl", 4), _cell(r, "samples/validity"), _cell(r, "samples/intdiv1"),
                 *([_cell(r, "samples/outside_domain")] if domain else []),
                 f"{r.oracle_calls:,.0f}", _fmt(r.run_wall_s / 60, np.nan, 1) if "run_wall_s" in r else "–"]
        cells += [_cell(r, o) for o in objectives]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| task | comparison (average reward) | pairs | mean difference | IRS wins | paired t p | Wilcoxon p |",
              "|---|---|---|---|---|---|---|"]
    for _, t in tests.iterrows():
        lines.append(f"| {t.task} | {t.comparison} | {t.pairs} | {t.mean_diff:+.4f} | {t.wins}/{t.pairs} | "
                     f"{t.t_p:.3g} | {t.wilcoxon_p:.3g} |")
    return "\n".join(lines) + "\n"


def plot_curves(frame: pd.DataFrame, task: str, x: str, path: Path) -> Path:
    """Average reward against ``x`` (``kl`` or ``oracle_calls``): each seed faint, the mean over
    seeds per step with standard-error bars on both axes."""
    from lightning_modules.plotting import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    data = frame[frame.task == task]
    if "complete" not in data:
        data = data.assign(complete=True)
    for k, (method, group) in enumerate(data.groupby("method", sort=True)):
        color = f"C{k}"
        for _, run_rows in group.groupby("seed"):
            run_rows = run_rows.sort_values("step")
            unfinished = not bool(run_rows.complete.all())
            ax.plot(run_rows[x], run_rows.average_reward, color=color, alpha=0.2, lw=0.8, ls="--" if unfinished else "-")
        by_step = group.groupby("step")
        mean, se = by_step[[x, "average_reward"]].mean(), by_step[[x, "average_reward"]].sem()
        ax.errorbar(mean[x], mean.average_reward, xerr=se[x].fillna(0), yerr=se.average_reward.fillna(0),
                    color=color, marker="o", ms=3, capsize=2,
                    label=f"{method} ({group.seed.nunique()} seed{'s' * (group.seed.nunique() > 1)}"
                          f"{', to step %d' % group.step.max() if not group.complete.all() else ''})")
    ax.set_xlabel({"kl": "KL(π ‖ π_ref), nats (estimated on 256 samples)",
                   "oracle_calls": "oracle calls (training samples scored)"}.get(x, x))
    if x == "kl":  # MORLHF can move 10× farther than a soup: linear near 0, logarithmic beyond 0.1 nats
        ax.set_xscale("symlog", linthresh=0.1)
    ax.set_ylabel("average reward across objectives")
    ax.set_title(f"{task}: uniform w (evaluations every k steps)")
    ax.legend()
    return save_figure(fig, path)


def unfinished_rows(runs: Path, finished_frame: pd.DataFrame) -> pd.DataFrame:
    """Evaluations of runs under ``runs`` (``<task>/<method>_s<seed>/evals.csv``) that are not in
    the results CSV: runs still training, or cut short. Shown in the curves and the matched-step
    table, never in the summary at T or the tests."""
    parts = []
    done = set(map(tuple, finished_frame[KEY].astype(str).to_numpy())) if len(finished_frame) else set()
    for evals in sorted(Path(runs).glob("*/*/evals.csv")):
        rows = pd.read_csv(evals, dtype={"w": str})
        if len(rows) and tuple(rows[KEY].astype(str).iloc[0]) not in done:
            parts.append(rows)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=KEY + ["step"])


def matched_step(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task and seed, the rows at the last step that every method reached (so runs cut short
    can still be compared with each other at equal steps)."""
    parts = []
    for (task, seed), group in frame.groupby(["task", "seed"], sort=True):
        if group.method.nunique() < 2:
            continue
        step = group.groupby("method").step.max().min()
        parts.append(group[group.step == step])
    return pd.concat(parts, ignore_index=True) if parts else frame.iloc[0:0]


def matched_markdown(rows: pd.DataFrame) -> str:
    if rows.empty:
        return ""
    objectives = sorted(c for c in rows if c.startswith("reward/"))
    head = ["task", "seed", "step", "method", "average reward", "reward sd", "KL", "validity", "oracle calls"]
    head += [o.split("/")[-1] for o in objectives]
    lines = ["", "Per seed, at the last step every method reached (runs in progress or cut short included):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in rows.sort_values(["task", "seed", "method"]).iterrows():
        cells = [r.task, str(r.seed), str(int(r.step)), r.method, f"{r.average_reward:.3f}", f"{r.reward_sd:.3f}",
                 f"{r.kl:.4f}", f"{r['samples/validity']:.3f}", f"{r.oracle_calls:,.0f}"]
        lines.append("| " + " | ".join(cells + [f"{r[o]:.3f}" for o in objectives]) + " |")
    return "\n".join(lines) + "\n"


def report(csv: Path, img_dir: Path, quiet: bool = False, runs: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = pd.read_csv(csv, dtype={"w": str}) if csv.is_file() else pd.DataFrame(columns=KEY + ["step"])
    summary, tests = summarise(frame), paired_tests(frame)
    summary.to_csv(csv.with_name(csv.stem + "_summary.csv"), index=False)
    tests.to_csv(csv.with_name(csv.stem + "_tests.csv"), index=False)
    text = markdown(summary, tests) if len(summary) else "No finished runs yet.\n"
    at_kl = matched_kl_tests(frame) if len(frame) else pd.DataFrame()
    at_kl.to_csv(csv.with_name(csv.stem + "_matched_kl.csv"), index=False)
    text += matched_kl_markdown(at_kl)
    everything = frame.assign(complete=True)
    if runs is not None:
        partial = unfinished_rows(runs, frame)
        csv.with_name(csv.stem + "_partial.csv").unlink(missing_ok=True)  # never a stale one
        if len(partial):
            partial.to_csv(csv.with_name(csv.stem + "_partial.csv"), index=False)
            everything = pd.concat([everything, partial.assign(complete=False)], ignore_index=True)
    matched = matched_step(everything)
    text += matched_markdown(matched)
    csv.with_name(csv.stem + "_summary.md").write_text(text)
    for task in sorted(everything.task.unique()):
        plot_curves(everything, task, "kl", img_dir / f"{csv.stem}_{task}_kl.png")  # one study, one set of plots
        plot_curves(everything, task, "oracle_calls", img_dir / f"{csv.stem}_{task}_oracle.png")
    if not quiet:
        print(text)
    return summary, tests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="train the missing runs, adding each finished one to the CSV")
    go.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    go.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    go.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    go.add_argument("--steps", type=int, default=100, help="T, optimiser steps per run (the protocol: 100)")
    go.add_argument("--python", default=sys.executable)
    for p in (go, sub.add_parser("report", help="rebuild the summary table, tests and plots from the CSV")):
        p.add_argument("--csv", default="docs/results/mo_protocol.csv")
        p.add_argument("--img-dir", default="docs/img")
        p.add_argument("--runs", default="runs/mo_protocol",
                       help="run directories: unfinished runs' evaluations join the curves and the matched-step table")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args)
    else:
        report(Path(args.csv), Path(args.img_dir), runs=Path(args.runs))


if __name__ == "__main__":
    main()
