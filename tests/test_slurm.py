"""SLURM operation with stand-in ``sbatch``/``srun``/``scontrol``: the rendered script, and a
preemption (SIGUSR1) that checkpoints, requeues and resumes to the same parameters."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cluster.slurm import Profile, main, render

ROOT = Path(__file__).resolve().parents[1]


def _profile(tmp_path, **overrides):
    data = dict(partition="gpu", account="chem", nodes=2, gpus_per_node=4, cpus_per_task=6, mem="64G",
                time="12:00:00", setup=["module load cuda", "source .venv/bin/activate"],
                sbatch=["--exclusive"], trainer_preset="configs/trainer/ddp_8gpu.yaml")
    data.update(overrides)
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_rendered_script_field_by_field(tmp_path):
    script = render(ROOT / "configs/era/qed.yaml", Profile.load(_profile(tmp_path)))
    directives = dict(line[len("#SBATCH --"):].split("=", 1) for line in script.splitlines()
                      if line.startswith("#SBATCH --") and "=" in line)
    assert directives["job-name"] == "rewardfit-qed-2x4gpu"
    assert directives["partition"] == "gpu" and directives["account"] == "chem" and directives["mem"] == "64G"
    assert directives["nodes"] == "2" and directives["ntasks-per-node"] == "4" and directives["gres"] == "gpu:4"
    assert directives["cpus-per-task"] == "6" and directives["time"] == "12:00:00"
    assert directives["signal"] == "SIGUSR1@90" and directives["output"].startswith("runs/era/qed")
    assert "#SBATCH --requeue" in script and "#SBATCH --exclusive" in script
    assert script.index("module load cuda") < script.index("srun ")
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    assert "main.py fit --config configs/trainer/ddp_8gpu.yaml --config" in srun
    assert "--trainer.num_nodes 2 --trainer.devices 4" in srun and "RequeueOnPreemption" in srun
    assert "--ckpt_path" not in srun  # Lightning only resumes the HPC checkpoint without one
    assert "12:00:00" in next(line for line in script.splitlines() if line.startswith("echo"))


def test_bad_profiles_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown profile key.*gpus"):
        Profile.load(_profile(tmp_path, gpus=8))
    with pytest.raises(FileNotFoundError, match="profile not found"):
        Profile.load(tmp_path / "missing.yaml")
    with pytest.raises(FileNotFoundError, match="task config not found"):
        render(tmp_path / "nope.yaml", Profile())


def test_dry_run_prints_the_script(tmp_path, capsys):
    assert main(["--config", str(ROOT / "configs/era/qed.yaml"), "--profile", str(_profile(tmp_path)), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("#!/bin/bash\n#SBATCH --job-name=rewardfit-qed-2x4gpu")


def _stand_ins(bin_dir: Path, log: Path):
    bin_dir.mkdir()
    scripts = {
        "sbatch": f'#!/bin/bash\necho "sbatch $*" >> {log}\necho "Submitted batch job 4242"\n',
        "srun": '#!/bin/bash\nexec "$@"\n',
        "scontrol": f'#!/bin/bash\necho "scontrol $*" >> {log}\n',
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _task_config(tmp_path, run_dir):
    config = yaml.safe_load((ROOT / "configs/pretrain/molgpt_tiny.yaml").read_text())
    config["trainer"].update(max_steps=6, limit_val_batches=0, num_sanity_val_steps=0, enable_checkpointing=True,
                             default_root_dir=str(run_dir), enable_progress_bar=False, deterministic=True,
                             callbacks=[{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                         "init_args": {"dirpath": str(run_dir / "checkpoints"),
                                                       "every_n_train_steps": 6, "save_last": True}}])
    path = tmp_path / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run_job(script: Path, env: dict):
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_preemption_checkpoints_requeues_and_resumes_exactly(tmp_path):
    log = tmp_path / "calls.log"
    _stand_ins(tmp_path / "bin", log)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
           "SLURM_JOB_NAME": "rewardfit-test", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1",
           "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost",
           "SLURM_SUBMIT_DIR": str(ROOT), "REWARDFIT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    profile = Profile(nodes=1, gpus_per_node=0, cpus_per_task=1, python=sys.executable)

    preempted_dir = tmp_path / "preempted"
    script = tmp_path / "job.sbatch"
    script.write_text(render(_task_config(tmp_path, preempted_dir), profile, drill_at_step=3))
    subprocess.run(["sbatch", str(script)], env=env, check=True, capture_output=True)
    _run_job(script, env)  # first allocation: SIGUSR1 at step 3 → checkpoint, requeue, stop
    assert (preempted_dir / "hpc_ckpt_1.ckpt").is_file()
    assert not list(preempted_dir.glob(".tmp-*")), "no half-written checkpoint may remain"
    assert torch.load(preempted_dir / "hpc_ckpt_1.ckpt", weights_only=False)["global_step"] == 3
    assert "scontrol requeue 4242" in log.read_text()
    assert not (preempted_dir / "checkpoints" / "last.ckpt").exists()  # it stopped at step 3, saved nothing else

    second = _run_job(script, {**env, "SLURM_RESTART_COUNT": "1"})  # the requeued job: no flags changed
    assert "restart 1" in second.stdout
    resumed = torch.load(preempted_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == 6

    straight_dir = tmp_path / "straight"
    script2 = tmp_path / "job2.sbatch"
    script2.write_text(render(_task_config(tmp_path, straight_dir), profile))
    _run_job(script2, env)
    straight = torch.load(straight_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert straight["global_step"] == 6
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    assert log.read_text().count("scontrol requeue") == 1
    assert sorted(p.name for p in (preempted_dir / "checkpoints").iterdir()) == ["epoch=0-step=6.ckpt", "last.ckpt"]


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs" / "slurm").glob("*.yaml")))
def test_shipped_profiles_load_and_render(name):
    """Every shipped profile loads (no unknown keys), names a trainer preset that exists, and renders
    a script for a shipped task config with its node and GPU counts."""
    profile = Profile.load(ROOT / "configs" / "slurm" / name)
    if profile.trainer_preset:
        assert (ROOT / profile.trainer_preset).is_file(), profile.trainer_preset
    script = render(ROOT / "configs" / "era" / "qed.yaml", profile)
    assert f"#SBATCH --nodes={profile.nodes}" in script
    assert f"--trainer.devices {max(profile.gpus_per_node, 1)}" in script
    assert ("--trainer.accelerator cpu" in script) == (profile.gpus_per_node == 0)
