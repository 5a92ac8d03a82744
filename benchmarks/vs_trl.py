"""rewardfit against TRL, side by side: offline DPO (pairs/s) and online RLOO (samples/s).

    bash benchmarks/trl_venv.sh                     # once: TRL in its own venv (.venv-trl)
    nice -n 5 .venv/bin/python benchmarks/vs_trl.py [--tasks dpo rloo profile-dpo] [--precisions fp32 bf16]
        [--sides rewardfit trl-defaults trl-best]
        [--repeats 2] [--dpo-steps 20 40] [--rloo-steps 3 12] [--threads 1]
        [--csv docs/results/bench_vs_trl.csv] [--study main] [--append]
    .venv/bin/python benchmarks/vs_trl.py --report     # the Markdown table of the rows in --csv

Results and discussion: docs/results/bench_vs_trl.md.

Same model (the shipped ``checkpoints/molgpt-moses``), same data, same batch sizes on both sides:

- **dpo**: 4,000 pairs from 2,000 of the model's own samples (top-k 5, ≤ 100 new tokens, seed 0),
  scored by ``oracles.rdkit_properties.QED`` with the ERA energy (−log QED, invalid → 4.5) and
  paired by ``datamodules.pairs.make_pairs`` (seed 0); the lower-energy member is "chosen". 32 pairs
  per step, DPO β = 0.1, Adam/AdamW lr 1e-6. rewardfit: ``OfflineAlignment`` with ``DPO`` under a
  Lightning ``Trainer`` (reference log-probs stored with the samples). TRL: ``DPOTrainer`` on the
  same pairs (empty prompt; the tokenizer adds ``<bos>`` only, so both sides train on
  ``<bos> SMILES <eos>``).
- **rloo**: 128 samples per step from the current policy (top-k 5, ≤ 100 new tokens), reward
  −energy with the same oracle, KL coefficient 0.05 folded into the reward, one leave-one-out group
  of 128. rewardfit: ``MultiObjectiveModule`` with ``policy_updates.RLOO`` (one objective, so one
  expert). TRL: ``RLOOTrainer`` with ``num_generations=128`` on an empty prompt.

TRL runs twice: ``defaults`` (its config defaults — gradient checkpointing on, reference model run
every step — with only what the comparison fixes set: batch size, steps, precision, CPU, no
saving/reporting, sampling settings for RLOO) and ``best`` (``gradient_checkpointing=False``, and for
DPO ``precompute_ref_log_probs=True``; for RLOO ``disable_dropout=True``, which rewardfit does too).

Measuring: each run is its own subprocess (``nice -n 5``; TRL's in ``.venv-trl``), with
``--threads`` torch threads. In the timed process a callback marks the start of step ``warm-up + 1``
and the end of step ``warm-up + timed``; between them it takes wall time and process CPU time
(``time.process_time``: all threads of the process; oracle scoring runs in process on both sides).
On a machine shared with other work the wall-clock rate says little, so the comparable figure is
units per CPU-second. Sides are interleaved (rewardfit, TRL defaults, TRL best, rewardfit, …) and
the table gives medians over repeats. One-off set-up (model load, tokenising, TRL's precomputed
reference pass) is reported apart, as ``setup_cpu_s``.

``profile-dpo`` prints a ``torch.profiler`` table of rewardfit's DPO step. (The prototype sides
``rewardfit-buckets4`` and ``rewardfit-fast-rounds`` of the CSV's earlier studies are in the modules
now: ``networks.sampling.bucketed_logprob`` and ``PolicyUpdate.old_logps``.)
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "checkpoints" / "molgpt-moses"
TOP_K, MAX_NEW_TOKENS, BETA, LR, KL_COEF = 5, 100, 0.1, 1e-6, 0.05
N_SAMPLES, N_PAIRS, PAIRS_PER_STEP, SAMPLES_PER_STEP = 2000, 4000, 32, 128
#: name → (side, settings, extra worker arguments)
SIDES = {"rewardfit": ("rewardfit", "-", {}),
         "trl-defaults": ("trl", "defaults", {"settings": "defaults"}),
         "trl-best": ("trl", "best", {"settings": "best"})}


# ---------------------------------------------------------------- shared by the workers
def step_window(warmup: int, timed: int):
    """Start/stop marks around steps warm-up + 1 … warm-up + timed (wall and process CPU time)."""
    marks = {}

    def begin(global_step: int):
        if global_step == warmup and "wall0" not in marks:
            marks.update(wall0=time.perf_counter(), cpu0=time.process_time())

    def end(global_step: int):
        if global_step == warmup + timed and "wall1" not in marks:
            marks.update(wall1=time.perf_counter(), cpu1=time.process_time())

    def result() -> dict:
        if "wall1" not in marks or "wall0" not in marks:
            raise RuntimeError(f"the timed steps {warmup + 1}–{warmup + timed} did not all run")
        return {"wall_s": marks["wall1"] - marks["wall0"], "cpu_s": marks["cpu1"] - marks["cpu0"]}

    return begin, end, result


def qed_oracle():
    from oracles.rdkit_properties import QED
    from oracles.transforms import NegLog

    return QED(transform=NegLog(), penalty=4.5)  # configs/oracles/qed.yaml, scored in process


def bos_only_tokenizer():
    """The model's tokenizer adding ``<bos>`` in front and nothing behind: TRL appends ``<eos>``
    to completions itself and checks that prompt ids prefix prompt+completion ids, which a
    ``<bos> … <eos>`` template breaks for an empty prompt."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(MODEL))
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", tok.bos_token_id)])
    return tok


def versions() -> dict:
    import torch
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import trl

        out["trl"] = trl.__version__
    except ImportError:
        import lightning

        out["lightning"] = lightning.__version__
    return out


# ---------------------------------------------------------------- workers
def work_prepare(args) -> dict:
    """The offline sample set (rewardfit's own ``prepare_data``) and the same pairs as JSON lines."""
    import numpy as np
    import pandas as pd

    from datamodules.pairs import make_pairs

    module = rewardfit_offline(args)
    module.prepare_data()
    frame = pd.read_parquet(args.dataset)
    i, j = make_pairs(list(frame["sequence"]), N_PAIRS, 0)  # OfflineAlignment's own rule and seed
    u = frame["energy"].to_numpy()
    tok = bos_only_tokenizer()
    same = sum(tok(s)["input_ids"] + [tok.eos_token_id] == list(ids)
               for s, ids in zip(frame["sequence"], frame["input_ids"]))
    with open(args.pairs, "w") as f:
        for a, b in zip(i, j):
            win, lose = (a, b) if u[a] <= u[b] else (b, a)
            f.write(json.dumps({"prompt": "", "chosen": frame["sequence"][win],
                                "rejected": frame["sequence"][lose]}) + "\n")
    lengths = frame["input_ids"].map(len).to_numpy()
    return {"samples": len(frame), "pairs": len(i), "valid": float(frame["valid"].mean()),
            "mean_qed_valid": float(frame["value_qed"][frame["valid"]].mean()),
            "mean_tokens_per_pair_member": float(np.concatenate([lengths[i], lengths[j]]).mean()),
            "same_tokens_when_retokenised": same / len(frame)}


def rewardfit_offline(args):
    from lightning_modules.alignment import OfflineAlignment
    from lightning_modules.pair_losses import DPO
    from networks.architectures import Pretrained

    return OfflineAlignment(oracle=qed_oracle(), policy=Pretrained(str(MODEL)), tokenizer=str(MODEL),
               objective=DPO(BETA), num_samples=N_SAMPLES, max_pairs=N_PAIRS,
               pairs_per_batch=PAIRS_PER_STEP, dataset_path=args.dataset, top_k=TOP_K,
               max_new_tokens=MAX_NEW_TOKENS, lr=LR, seed=0)


def lightning_fit(module, args) -> dict:
    import lightning as L

    begin, end, result = step_window(args.warmup, args.timed)

    class Window(L.Callback):
        def on_train_batch_start(self, trainer, *_):
            begin(trainer.global_step)

        def on_train_batch_end(self, trainer, *_):
            end(trainer.global_step)

    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=args.warmup + args.timed,
                        precision="bf16-mixed" if args.precision == "bf16" else "32-true",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        callbacks=[Window()])
    trainer.fit(module)
    return result()


def work_rewardfit_dpo(args) -> dict:
    return lightning_fit(rewardfit_offline(args), args)


def work_rewardfit_rloo(args) -> dict:
    from lightning_modules.multi_objective import MultiObjectiveModule
    from lightning_modules.policy_updates import RLOO
    from networks.architectures import Pretrained

    module = MultiObjectiveModule(oracle=qed_oracle(), policy=Pretrained(str(MODEL)), tokenizer=str(MODEL),
                                  update=RLOO(kl_coef=KL_COEF), samples_per_step=SAMPLES_PER_STEP, lr=LR,
                                  top_k=TOP_K, max_new_tokens=MAX_NEW_TOKENS,
                                  steps_per_epoch=args.warmup + args.timed, seed=0)
    return lightning_fit(module, args)


def trl_callback(args):
    from transformers import TrainerCallback

    begin, end, result = step_window(args.warmup, args.timed)

    class Window(TrainerCallback):
        def on_step_begin(self, _args, state, control, **kw):
            begin(state.global_step)

        def on_step_end(self, _args, state, control, **kw):
            end(state.global_step)

    return Window(), result


def trl_common(args, out: str) -> dict:
    common = dict(output_dir=out, max_steps=args.warmup + args.timed, bf16=args.precision == "bf16",
                  use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True, seed=0)
    if args.settings == "best":
        common["gradient_checkpointing"] = False
    return common


def work_trl_dpo(args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    rows = [json.loads(line) for line in open(args.pairs)]
    dataset = Dataset.from_list(rows)
    model = AutoModelForCausalLM.from_pretrained(str(MODEL), dtype=torch.float32)
    callback, result = trl_callback(args)
    with tempfile.TemporaryDirectory() as out:
        extra = {"precompute_ref_log_probs": True} if args.settings == "best" else {}
        config = DPOConfig(per_device_train_batch_size=PAIRS_PER_STEP, beta=BETA, learning_rate=LR,
                           **trl_common(args, out), **extra)
        wall, cpu = time.perf_counter(), time.process_time()
        trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=bos_only_tokenizer(),
                             callbacks=[callback])
        setup = {"setup_wall_s": time.perf_counter() - wall, "setup_cpu_s": time.process_time() - cpu}
        trainer.train()
    return {**result(), **setup}


def work_trl_rloo(args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import RLOOConfig, RLOOTrainer

    oracle = qed_oracle()

    def qed_reward(prompts, completions, **_):
        return (-oracle(list(completions)).energies).tolist()

    dataset = Dataset.from_list([{"prompt": ""}] * (args.warmup + args.timed + 8))
    model = AutoModelForCausalLM.from_pretrained(str(MODEL), dtype=torch.float32)
    callback, result = trl_callback(args)
    with tempfile.TemporaryDirectory() as out:
        extra = {"disable_dropout": True} if args.settings == "best" else {}
        config = RLOOConfig(per_device_train_batch_size=SAMPLES_PER_STEP, num_generations=SAMPLES_PER_STEP,
                            max_completion_length=MAX_NEW_TOKENS, top_k=TOP_K, temperature=1.0, beta=KL_COEF,
                            learning_rate=LR, **trl_common(args, out), **extra)
        wall, cpu = time.perf_counter(), time.process_time()
        trainer = RLOOTrainer(model=model, reward_funcs=qed_reward, args=config, train_dataset=dataset,
                              processing_class=bos_only_tokenizer(), callbacks=[callback])
        setup = {"setup_wall_s": time.perf_counter() - wall, "setup_cpu_s": time.process_time() - cpu}
        trainer.train()
    return {**result(), **setup}


def work_profile_dpo(args) -> dict:
    """rewardfit's DPO step under ``torch.profiler`` for the timed steps: where the time goes."""
    import lightning as L
    import torch
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], record_shapes=False)

    class Window(L.Callback):
        def on_train_batch_start(self, trainer, *_):
            if trainer.global_step == args.warmup:
                prof.__enter__()

        def on_train_batch_end(self, trainer, *_):
            if trainer.global_step == args.warmup + args.timed:
                prof.__exit__(None, None, None)

    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=args.warmup + args.timed,
                        precision="bf16-mixed" if args.precision == "bf16" else "32-true",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        callbacks=[Window()])
    trainer.fit(rewardfit_offline(args))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=30))
    return {"threads": torch.get_num_threads()}


WORKERS = {"prepare": work_prepare, "rewardfit-dpo": work_rewardfit_dpo, "rewardfit-rloo": work_rewardfit_rloo,
           "trl-dpo": work_trl_dpo, "trl-rloo": work_trl_rloo, "profile-dpo": work_profile_dpo}


def worker_main(args) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = WORKERS[args.worker](args)
    out.update(versions(), threads=torch.get_num_threads())
    Path(args.json_out).write_text(json.dumps(out))


# ---------------------------------------------------------------- orchestration
def run_worker(python: Path, worker: str, args, log: Path, **extra) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        json_out = f.name
    cmd = ["nice", "-n", str(args.nice), str(python), str(Path(__file__).resolve()), "--worker", worker,
           "--json-out", json_out, "--threads", str(args.threads), "--dataset", str(args.dataset),
           "--pairs", str(args.pairs)]
    for key, value in extra.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "REWARDFIT_PRECISION": extra.get("precision", "fp32"), "PYTHONPATH": str(ROOT)}
    wall = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log.read_text().splitlines()[-25:]
        raise SystemExit(f"worker {worker} {extra} failed ({done.returncode}); last lines of {log}:\n"
                         + "\n".join(tail))
    out = json.loads(Path(json_out).read_text())
    os.unlink(json_out)
    out["process_wall_s"] = time.perf_counter() - wall
    return out


def device_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(rows: list[dict]) -> str:
    """Medians per (study, task, precision, side, settings); each side against plain rewardfit of
    the same study (the runs it was interleaved with)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r.get("study", ""), r["task"], r["precision"], r["side"], r["settings"]), []).append(r)
    lines = ["| study | task | precision | side | settings | repeats | units/CPU-s (median) | units/s wall (median) "
             "| rewardfit ÷ this (CPU) | set-up CPU-s |", "|---|---|---|---|---|---|---|---|---|---|"]
    med = {k: statistics.median(r["units_per_cpu_s"] for r in v) for k, v in groups.items()}
    for key, runs in groups.items():
        study, task, precision, side, settings = key
        ours = med.get((study, task, precision, "rewardfit", "-"))
        if not ours or key[3:] == ("rewardfit", "-"):
            ratio = "—"
        elif side == "rewardfit":  # a variant of rewardfit: its speed-up over the plain one
            ratio = f"variant: {med[key] / ours:.2f}× plain"
        else:
            ratio = f"{ours / med[key]:.2f}×"
        setups = [r["setup_cpu_s"] for r in runs if r.get("setup_cpu_s") not in ("", None)]
        setup = statistics.median(setups) if setups else None
        unit = "pairs" if task == "dpo" else "samples"
        lines.append(f"| {study} | {task} ({unit}) | {precision} | {side} | {settings} | {len(runs)} | "
                     f"{med[key]:.1f} | "
                     f"{statistics.median(r['units_per_s'] for r in runs):.1f} | {ratio} | "
                     f"{'' if setup is None else f'{setup:.1f}'} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["dpo", "rloo"], choices=["dpo", "rloo", "profile-dpo"])
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--sides", nargs="+", default=["rewardfit", "trl-defaults", "trl-best"], choices=list(SIDES))
    p.add_argument("--dpo-steps", type=int, nargs=2, default=[20, 40], metavar=("WARMUP", "TIMED"))
    p.add_argument("--rloo-steps", type=int, nargs=2, default=[3, 12], metavar=("WARMUP", "TIMED"))
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--nice", type=int, default=5)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_vs_trl")
    p.add_argument("--trl-venv", type=Path, default=ROOT / ".venv-trl")
    p.add_argument("--csv", type=Path, default=ROOT / "docs" / "results" / "bench_vs_trl.csv")
    p.add_argument("--study", default="main", help="label of this run's rows in --csv (the table compares within one)")
    p.add_argument("--append", action="store_true", help="keep the rows already in --csv and add these")
    p.add_argument("--report", action="store_true", help="only print the Markdown table of the rows in --csv")
    # worker side
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--json-out", help=argparse.SUPPRESS)
    p.add_argument("--dataset", type=str, default=None, help=argparse.SUPPRESS)
    p.add_argument("--pairs", type=str, default=None, help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--settings", default="-", help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--timed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker_main(args)

    if args.report:
        rows = read_csv(args.csv)
        print(f"{rows[0]['date']}; {rows[0]['device']}; {rows[0]['threads']} torch thread(s) per run")
        print(table(rows))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    args.dataset = args.dataset or str(args.work / "qed_samples.parquet")
    args.pairs = args.pairs or str(args.work / "qed_pairs.jsonl")
    log = args.work / "workers.log"
    ours, trl_python = Path(sys.executable), args.trl_venv / "bin" / "python"
    if not (args.trl_venv / ".installed").is_file():
        subprocess.run(["bash", str(ROOT / "benchmarks" / "trl_venv.sh"), str(args.trl_venv)], cwd=ROOT, check=True)
    if "profile-dpo" in args.tasks:
        warmup, timed = args.dpo_steps
        run_worker(ours, "profile-dpo", args, args.work / "profile_dpo.txt", warmup=warmup, timed=timed,
                   precision=args.precisions[0])
        print((args.work / "profile_dpo.txt").read_text())
        return
    if not Path(args.pairs).is_file():
        data = run_worker(ours, "prepare", args, log)
        Path(args.work / "data.json").write_text(json.dumps(data, indent=1))
    data = json.loads(Path(args.work / "data.json").read_text())
    print("data:", data, flush=True)

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    kept = read_csv(args.csv) if args.append and args.csv.is_file() else []
    rows, seen_versions = [], {}
    for task in [t for t in args.tasks if t in ("dpo", "rloo")]:
        warmup, timed = args.dpo_steps if task == "dpo" else args.rloo_steps
        per_step = PAIRS_PER_STEP if task == "dpo" else SAMPLES_PER_STEP
        for precision in args.precisions:
            for repeat in range(args.repeats):
                for name in args.sides:  # interleaved: a busy spell slows every side alike
                    side, settings, extra = SIDES[name]
                    python = ours if side == "rewardfit" else trl_python
                    extra = dict(extra, warmup=warmup, timed=timed, precision=precision)
                    out = run_worker(python, f"{side}-{task}", args, log, **extra)
                    units = per_step * timed
                    row = {"study": args.study, "task": task, "side": side, "settings": settings,
                           "precision": precision,
                           "repeat": repeat, "timed_steps": f"{warmup + 1}-{warmup + timed}", "units": units,
                           "wall_s": round(out["wall_s"], 3), "cpu_s": round(out["cpu_s"], 3),
                           "units_per_s": round(units / out["wall_s"], 2),
                           "units_per_cpu_s": round(units / out["cpu_s"], 2),
                           "setup_cpu_s": round(out["setup_cpu_s"], 2) if "setup_cpu_s" in out else "",
                           "threads": out["threads"], "torch": out["torch"],
                           "transformers": out["transformers"], "trl": out.get("trl", ""),
                           "lightning": out.get("lightning", ""), "device": device_name(), "date": date}
                    seen_versions[side] = {k: out[k] for k in ("torch", "transformers", "trl", "lightning") if k in out}
                    rows.append(row)
                    print(f"{task} {precision} {side:9s} {settings:8s} repeat {repeat}: "
                          f"{row['units_per_cpu_s']:.1f} units/CPU-s, {row['units_per_s']:.1f} units/s wall "
                          f"(cpu {row['cpu_s']:.1f} s, wall {row['wall_s']:.1f} s)", flush=True)
                    write_csv(args.csv, kept + rows)
    print(f"\n{date}; {device_name()}; {args.threads} torch thread(s) per run; versions {seen_versions}")
    print(table(rows))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.update({k: float(r[k]) for k in ("units_per_cpu_s", "units_per_s")},
                 setup_cpu_s=float(r["setup_cpu_s"]) if r.get("setup_cpu_s") else "")
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        fields = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
