"""Train a reward model from a config, test it on its held-out split, and write a shipped directory.

    OMP_NUM_THREADS=1 python benchmarks/train_reward_model.py --config configs/reward_models/qm9.yaml \
        --out checkpoints/reward-qm9

Why a script next to ``main.py fit``: a shipped checkpoint needs more than weights — the test
metrics per task (in source units), the confusion matrix of a classifier, the split sizes, the
wall time and the exact command — and these are written into ``config.json`` (``card``) and a
``README.md`` model card by the same run that made the weights, so they cannot drift apart.
Extra arguments after ``--`` go to the CLI (``-- --trainer.max_epochs 3``). ``--retest`` evaluates
the model already in ``--out`` on the config's test split again (current evaluation code) and
rewrites only the card's test metrics.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lightning_modules.reward_model import save_reward_model  # noqa: E402
from main import cli_main  # noqa: E402

HARTREE_EV = 27.211386

BASELINES = {  # published QM9 test MAE for context: SchNet (Schütt et al., J. Chem. Phys. 148, 241722, 2018),
    # trained on 110k molecules WITH 3-D geometries; our models see only the SMILES graph
    "alpha": "SchNet 0.235 bohr³",
    "gap": "SchNet 0.063 eV = 0.0023 Ha",
    "u0": "SchNet 0.014 eV = 0.00051 Ha",
}


def _card_markdown(card: dict) -> str:
    lines = [f"# {card['name']}", "", card["description"], "",
             "## Data and split", "", f"- data: `{card['data']}`", f"- split: {card['split']}",
             f"- rows: {card['sizes']}" + (f"; dropped invalid rows: {card['n_dropped']}" if card["n_dropped"] else ""),
             "", "## Model", "", f"- task: {card['task']}; outputs: {', '.join(card['tasks'])}",
             f"- encoder: `{json.dumps(card['encoder'])}`", f"- parameters: {card['n_parameters']:,}",
             "- files: `model.safetensors` (weights and float64 standardisation buffers), `config.json` "
             "(constructor arguments, standardisation mean/std, this card)", "",
             "## Held-out test metrics", ""]
    metrics = card["test_metrics"]
    if card["task"] == "regression":
        lines += ["| task | unit | MAE | RMSE | R² | Pearson | Spearman |", "|---|---|---|---|---|---|---|"]
        for t in card["tasks"]:
            m = {k.split("/")[-1]: v for k, v in metrics.items() if k.startswith(f"test/{t}/")}
            unit = card.get("units", {}).get(t, "")
            mae = f"{m['mae']:.4g}" + (f" ({m['mae'] * HARTREE_EV:.3g} eV)" if unit == "Ha" else "")
            r = lambda x: f"{x:.7f}" if x > 0.9999 else f"{x:.4f}"  # noqa: E731
            lines.append(f"| {t} | {unit} | {mae} | {m['rmse']:.4g} | {r(m['r2'])} | {r(m['pearson'])} | "
                         f"{r(m['spearman'])} |")
    else:
        lines += ["| output | test AUROC |", "|---|---|"]
        for t in card["tasks"]:
            lines.append(f"| {t} | {metrics[f'test/{t}/auroc']:.4f} |")
        if "test/accuracy" in metrics:
            lines += ["", f"Accuracy (argmax): {metrics['test/accuracy']:.4f}"]
    if card.get("confusion"):
        lines += ["", "Confusion matrix on the test split (rows: true class, columns: predicted):", "",
                  "| true \\ predicted | " + " | ".join(card["tasks"]) + " |",
                  "|---" * (len(card["tasks"]) + 1) + "|"]
        for t, row in zip(card["tasks"], card["confusion"]):
            lines.append(f"| {t} | " + " | ".join(str(int(v)) for v in row) + " |")
    if card.get("baselines"):
        lines += ["", "Published test MAE for context (different models and splits, not a like-for-like comparison):", ""]
        lines += [f"- {t}: {b}" for t, b in card["baselines"].items()]
    lines += ["", "## How it was made", "", f"- command: `{card['command']}`"]
    if card.get("test_command"):
        lines += [f"- test metrics above recomputed with: `{card['test_command']}`"]
    lines += [
              f"- wall time: {card['wall_time_s'] / 60:.1f} min ({card['epochs_run']} epochs, best epoch by "
              f"validation chosen) on {card['hardware']}"]
    if card.get("notes"):
        lines += [f"- {card['notes']}"]
    lines += [f"- torch {card['torch']}, seed {card['seed']}", "",
              "## Use", "", "```python", "from oracles.learned import LearnedOracle",
              f"oracle = LearnedOracle('{card['name']}')  # energies, one column per task", "```", ""]
    return "\n".join(lines)


def retest(directory: str, data, trainer, command: str) -> dict:
    """Test the saved model in ``directory`` again and rewrite its card's metrics and README."""
    from lightning_modules.reward_model import load_reward_model

    model = load_reward_model(directory)
    card = dict(model.card)
    metrics = {k: float(v) for k, v in trainer.test(model, datamodule=data)[0].items()}
    card["test_metrics"] = metrics
    card["test_command"] = command
    card["confusion"] = model.confusion["test"].tolist() if "test" in model.confusion else None
    out = save_reward_model(model, directory, card)
    (out / "README.md").write_text(_card_markdown(card))
    print(json.dumps({"test": metrics}, indent=1))
    if card["confusion"]:
        print(np.array(card["confusion"]))
    return card


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--description", default="")
    parser.add_argument("--retest", action="store_true")
    parser.add_argument("--notes", default="", help="a line for the card, e.g. about the machine")
    args = parser.parse_args(argv)
    command = "OMP_NUM_THREADS=1 python benchmarks/train_reward_model.py " + " ".join(
        f"--config {c}" for c in args.config) + f" --out {args.out}" + (
        " -- " + " ".join(shlex.quote(e) for e in extra) if extra else "")
    cli_args = [x for c in args.config for x in ("--config", c)] + extra
    cli = cli_main(cli_args, run=False)
    model, data, trainer = cli.model, cli.datamodule, cli.trainer
    if args.retest:
        return retest(args.out, data, trainer, command + " --retest")
    start = time.time()
    trainer.fit(model, datamodule=data)
    fit_time = time.time() - start
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:
        model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    metrics = {k: float(v) for k, v in trainer.test(model, datamodule=data)[0].items()}
    data_path = Path(data.path).resolve()
    if data_path.is_relative_to(ROOT):
        data_path = data_path.relative_to(ROOT)
    elif data_path.is_relative_to(ROOT.parent):
        data_path = Path("..") / data_path.relative_to(ROOT.parent)
    hp = model.hparams
    card = {
        "name": Path(args.out).name, "description": args.description, "data": str(data_path),
        "split": (f"{data.split}" + (f" on {data.split_column} {data.split_values}" if data.split == "column" else
                                     f" {data.fractions}, seed {data.seed}")),
        "sizes": {k: len(v[0]) for k, v in data.data.items()}, "n_dropped": data.n_dropped,
        "task": hp.task, "tasks": list(hp.tasks), "encoder": hp.encoder,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "units": getattr(data, "units", {}), "test_metrics": metrics,
        "confusion": model.confusion["test"].tolist() if "test" in model.confusion else None,
        "baselines": {t: BASELINES[t] for t in hp.tasks if t in BASELINES} if hp.task == "regression" else None,
        "command": command, "wall_time_s": round(fit_time, 1), "epochs_run": trainer.current_epoch,
        "best_checkpoint": best, "hardware": f"{platform.machine()} CPU, {torch.get_num_threads()} thread(s)"
        if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
        "example_input": data.data["test"][0][0], "torch": torch.__version__, "seed": cli.config.get("seed_everything"),
    }
    out = save_reward_model(model, args.out, card)
    (out / "README.md").write_text(_card_markdown(card))
    print(json.dumps({"test": metrics, "wall_time_s": card["wall_time_s"]}, indent=1))
    if card["confusion"]:
        print(np.array(card["confusion"]))
    return card


if __name__ == "__main__":
    main()
