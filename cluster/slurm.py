"""``rewardfit-slurm``: render and submit an sbatch script for a task config and a cluster profile.

    rewardfit-slurm --config configs/era/base.yaml --config configs/era/tasks/qed.yaml --profile configs/slurm/a100_node.yaml [--dry-run]

The script asks SLURM for ``nodes × gpus_per_node`` tasks (one per GPU, as DDP wants), sends
``SIGUSR1`` 90 s before the end (``--signal=SIGUSR1@90``), may be requeued (``--requeue``), and
runs ``srun python main.py fit --config TASK …`` with:

- ``--trainer.num_nodes`` / ``--trainer.devices`` from the profile,
- a ``SLURMEnvironment(auto_requeue=False)`` plugin and the :class:`callbacks.RequeueOnPreemption`
  callback (checkpoint at a batch boundary, ``scontrol requeue``, clean stop),
- no ``--ckpt_path``: Lightning then resumes a requeued job from its newest ``hpc_ckpt_*``.

The saved config may be overwritten by the requeued job (``main.py`` allows it). Job name and log
lines carry the task, nodes × GPUs, CPUs, wall time and output directory.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

@dataclass
class Profile:
    """A cluster profile (``configs/slurm/*.yaml``)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    nodes: int = 1
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem: str | None = None
    time: str = "24:00:00"
    signal_seconds: int = 90
    setup: list[str] = field(default_factory=list)  # shell lines: module load …, conda activate …
    sbatch: list[str] = field(default_factory=list)  # extra "#SBATCH" options, e.g. "--exclusive"
    python: str = "python"
    trainer_preset: str | None = None  # e.g. configs/trainer/a100.yaml, composed before the task

    @classmethod
    def load(cls, path: str | Path) -> "Profile":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"SLURM profile not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown profile key(s) {unknown}; known: {sorted(known)}")
        profile = cls(**data)
        if profile.nodes < 1 or profile.gpus_per_node < 0 or profile.cpus_per_task < 1:
            raise ValueError(f"{path}: nodes ≥ 1, gpus_per_node ≥ 0 and cpus_per_task ≥ 1 are required")
        return profile


def task_args(configs) -> list[str]:
    """``--config`` arguments for one or more task configs (later ones override), a moved config
    (``configs/moved.yaml``) replaced by the files it became; each must exist."""
    from cluster.config_files import expand_moved

    configs = [configs] if isinstance(configs, (str, Path)) else list(configs)
    args = expand_moved([a for c in configs for a in ("--config", str(c))])
    for flag, value in zip(args, args[1:]):
        if flag == "--config" and not Path(value).is_file():
            raise FileNotFoundError(f"task config not found: {value}")
    return args


def task_output_dir(configs) -> str:
    """The run's ``trainer.default_root_dir``: the last one the task configs (or flags) set."""
    args = configs if isinstance(configs, list) and configs[:1] == ["--config"] else task_args(configs)
    out = None
    for flag, value in zip(args, args[1:]):
        if flag == "--config":
            data = yaml.safe_load(Path(value).read_text()) or {}
            out = (data.get("trainer") or {}).get("default_root_dir") or out
        elif flag == "--trainer.default_root_dir":
            out = value
    return str(out or "lightning_logs")


def render(config: str | Path, profile: Profile, extra_args: list[str] | None = None,
           drill_at_step: int | None = None) -> str:
    """The sbatch script for ``config`` (a task config, or a list: base + overrides) on ``profile``."""
    args = task_args(config)
    config = Path([value for flag, value in zip(args, args[1:]) if flag == "--config"][-1])
    out = task_output_dir(args)
    gpus = profile.gpus_per_node
    tasks = max(gpus, 1)
    name = f"rewardfit-{config.stem}-{profile.nodes}x{gpus}gpu"
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}"]
    for key in ("partition", "account", "qos", "constraint", "mem"):
        value = getattr(profile, key)
        if value:
            lines.append(f"#SBATCH --{key}={value}")
    lines += [f"#SBATCH --nodes={profile.nodes}", f"#SBATCH --ntasks-per-node={tasks}"]
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}")
    lines += [f"#SBATCH --cpus-per-task={profile.cpus_per_task}", f"#SBATCH --time={profile.time}",
              f"#SBATCH --signal=SIGUSR1@{profile.signal_seconds}", "#SBATCH --requeue",
              "#SBATCH --open-mode=append", f"#SBATCH --output={out}/slurm-%j.out"]
    lines += [f"#SBATCH {option}" for option in profile.sbatch]
    lines += ["", "set -euo pipefail", 'cd "${SLURM_SUBMIT_DIR:-$PWD}"', *profile.setup, f"mkdir -p {shlex.quote(out)}",
              f'echo "[rewardfit] job ${{SLURM_JOB_ID:-?}} restart ${{SLURM_RESTART_COUNT:-0}}: {config} on '
              f'{profile.nodes} node(s) x {gpus} GPU(s), {profile.cpus_per_task} CPUs/task, wall time {profile.time}, '
              f'output {out}"']
    command = [profile.python, "main.py", "fit"]
    if profile.trainer_preset:
        command += ["--config", profile.trainer_preset]
    command += [*args,
                "--trainer.num_nodes", str(profile.nodes), "--trainer.devices", str(tasks),
                "--trainer.plugins", "lightning.pytorch.plugins.environments.SLURMEnvironment",
                "--trainer.plugins.auto_requeue", "false",
                "--trainer.callbacks+=" + json.dumps({"class_path": "callbacks.RequeueOnPreemption",
                                                      "init_args": {"drill_at_step": drill_at_step}}),
                *(extra_args or [])]
    if not gpus:
        command += ["--trainer.accelerator", "cpu"]
    lines += ["srun " + " ".join(shlex.quote(c) for c in command), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rewardfit-slurm", description="Render and submit a SLURM job for a task.")
    parser.add_argument("--config", required=True, action="append",
                        help="task config; repeat for base + overrides (e.g. configs/era/base.yaml, configs/era/tasks/qed.yaml)")
    parser.add_argument("--profile", required=True, help="cluster profile (configs/slurm/*.yaml)")
    parser.add_argument("--dry-run", action="store_true", help="print the script; submit nothing")
    parser.add_argument("--drill-at-step", type=int, default=None,
                        help="raise the preemption signal once at this step: a requeue fire drill")
    parser.add_argument("--script", default=None, help="where to write the script (default: OUTPUT/job.sbatch)")
    args, extra = parser.parse_known_args(argv)
    script = render(args.config, Profile.load(args.profile), extra, args.drill_at_step)
    if args.dry_run:
        print(script)
        return 0
    path = Path(args.script or Path(task_output_dir(args.config)) / "job.sbatch")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    if shutil.which("sbatch") is None:
        print(f"sbatch not found on PATH; script written to {path}", file=sys.stderr)
        return 1
    result = subprocess.run(["sbatch", str(path)], text=True)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
