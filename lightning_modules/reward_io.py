"""Saving and loading reward models: a self-contained directory (``model.safetensors`` +
``config.json``, the format shipped under ``checkpoints/reward-*``) or a Lightning ``.ckpt``, and
the callback that exports the best weights at the end of ``fit``."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch

from lightning_modules.reward_model import RewardModelModule
from networks.files import honour_umask


def _plain(value):
    """hparams → JSON-safe plain data."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_reward_model(module: RewardModelModule, directory: str | Path, card: dict | None = None) -> Path:
    """Write ``model.safetensors`` (weights and float64 standardisation buffers) and
    ``config.json`` (constructor arguments, statistics, and ``card`` metadata)."""
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(module, str(directory / "model.safetensors"))  # handles tied weights (a GPT's embeddings)
    honour_umask(directory / "model.safetensors")  # safetensors writes 0600
    init_args = _plain({k: v for k, v in module.hparams.items() if not k.startswith("_")})  # not the CLI's _class_path
    config = {"class_path": f"{RewardModelModule.__module__}.{RewardModelModule.__qualname__}",
              "init_args": init_args,
              "target_mean": module.target_mean.tolist(), "target_std": module.target_std.tolist(),
              "card": card or {}}
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    return directory


def resolve_reward_checkpoint(name_or_path: str | Path) -> Path:
    """A directory, a ``.ckpt`` file, or the name of a directory under ``checkpoints/``."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    shipped = Path(__file__).resolve().parents[1] / "checkpoints" / str(name_or_path)
    if shipped.is_dir():
        return shipped
    raise FileNotFoundError(f"no reward-model checkpoint {name_or_path!r} (a directory with config.json and "
                            f"model.safetensors, a Lightning .ckpt, or a name under checkpoints/)")


def load_reward_model(name_or_path: str | Path, map_location: str | torch.device = "cpu") -> RewardModelModule:
    """Load a directory written by :func:`save_reward_model` or a Lightning checkpoint, in eval mode."""
    path = resolve_reward_checkpoint(name_or_path)
    if path.is_file():
        module = RewardModelModule.load_from_checkpoint(str(path), map_location=map_location, weights_only=True)
        return module.eval()
    from safetensors.torch import load_model

    missing = [f for f in ("config.json", "model.safetensors") if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"reward-model directory {path} is missing {missing}")
    config = json.loads((path / "config.json").read_text())
    module = RewardModelModule(**{k: v for k, v in config["init_args"].items() if not k.startswith("_")})
    load_model(module, str(path / "model.safetensors"), device=str(map_location))
    module.card = config.get("card", {})
    return module.to(map_location).eval()


class ExportRewardModel(L.Callback):
    """At the end of ``fit``, restore the best-validation weights (when a ``ModelCheckpoint``
    monitored something) and write them with :func:`save_reward_model` to ``dirpath``."""

    def __init__(self, dirpath: str, restore_best: bool = True):
        self.dirpath = dirpath
        self.restore_best = restore_best

    def on_fit_end(self, trainer, pl_module):
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
        if self.restore_best and best and Path(best).is_file():
            state = torch.load(best, map_location=pl_module.device, weights_only=True)["state_dict"]
            pl_module.load_state_dict(state)
        if trainer.is_global_zero:
            save_reward_model(pl_module, self.dirpath, {"best_checkpoint": best or None})
