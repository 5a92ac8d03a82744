"""Rewrite a FingerprintMLP reward model without its heavy-atom count column — the same function,
without the cancellation (issue 27, item 0).

    python benchmarks/drop_heavy_atom_column.py --checkpoint checkpoints/reward-qm9 --out runs/reward-qm9-folded \
        --check ../shared/data/qm9/qm9_qm9pack.csv.gz

Why: the heavy-atom count is the sum of the element counts (all elements but H, plus "other") for
every molecule. A model that also feeds the counts straight to its head (``linear_composition``)
can carry any weight on that column and the opposite weight on each element. The first reward-qm9
did: ±1.55e4 on the α output and ±1.06e5 on the gap output. In float32 those terms cancel to a
few units, so the rounding of the cancellation shows in the predictions, and it depends on the
batch a molecule is computed in (the matrix-multiply blocking changes with the batch size).

What it does: the column's weight is added to each element's weight, in float64, wherever the
composition counts enter a linear layer (the first MLP layer and, with ``linear_composition``,
the head), the sums are stored in float32, and the column is removed (``heavy_atoms: false``).
Heavy atoms = C + … + P + other holds for every molecule without dummy atoms (``*`` counts as
"other" but not as a heavy atom), so the rewritten model computes what the old one did, up to the
float32 rounding of the folded weights. ``--check`` measures it on real molecules: old vs new in
float64 with exact counts (reward-qm9: 3.6e-9 σ at most), and how far float32 predictions move
between batch sizes 1 and 1,024, before and after.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_modules.reward_model import load_reward_model, resolve_reward_checkpoint  # noqa: E402
from networks.encoders import COUNTED_ELEMENTS, FingerprintMLP  # noqa: E402
from networks.files import honour_umask  # noqa: E402

#: positions inside the composition block (see FingerprintMLP._composition)
HEAVY = len(COUNTED_ELEMENTS) + 1
ELEMENTS = list(range(1, len(COUNTED_ELEMENTS) + 1))  # C … P and "other" (H is index 0)


def fold(model) -> None:
    """In place: move the heavy-atom column's weights onto the element columns and drop it."""
    enc = model.encoder
    if not isinstance(enc, FingerprintMLP) or not enc.composition or not enc.heavy_atoms:
        raise ValueError("the model has no heavy-atom column (a FingerprintMLP with composition and heavy_atoms)")
    new = FingerprintMLP(**{**enc.init_args, "heavy_atoms": False})

    def folded(weight: torch.Tensor, start: int) -> torch.Tensor:
        w = weight.detach().double().clone()
        w[:, [start + j for j in ELEMENTS]] += w[:, [start + HEAVY]]
        keep = [c for c in range(w.shape[1]) if c != start + HEAVY]
        return w[:, keep].to(weight.dtype)

    if not len(enc.mlp):
        raise ValueError("an encoder without hidden layers feeds the raw features to the head; not supported")
    with torch.no_grad():
        first = enc.mlp[0]
        new.mlp[0].weight.copy_(folded(first.weight, enc.n_bits))
        new.mlp[0].bias.copy_(first.bias)
        for a, b in zip(list(enc.mlp)[1:], list(new.mlp)[1:]):
            b.load_state_dict(a.state_dict())
        if enc.linear_composition:
            head = model.heads[0]
            if not isinstance(head, torch.nn.Linear):
                raise ValueError("linear_composition with a non-linear head: the column cannot be folded")
            start = head.weight.shape[1] - enc.n_composition
            replacement = torch.nn.Linear(head.weight.shape[1] - 1, head.weight.shape[0])
            replacement.weight.copy_(folded(head.weight, start))
            replacement.bias.copy_(head.bias)
            model.heads[0] = replacement
    model.encoder = new
    model.hparams["encoder"] = new.to_config()


def predictions(model, smiles: list[str], batch_size: int, double: bool = False) -> np.ndarray:
    """Standardised outputs [n, k] (σ units), float32 or float64 arithmetic.

    In float64 the composition counts are restored to exact multiples of ``composition_scale``:
    the float32 features hold 8 × 0.1 as 0.80000001, which the head divides back to 8.0000001,
    and times the old model's 1e5 weights that alone moves a prediction by 0.06 σ."""
    m = copy.deepcopy(model).eval()
    if double:
        m = m.double()
    out = []
    with torch.no_grad():
        for i in range(0, len(smiles), batch_size):
            feats = m.encoder.featurize(smiles[i:i + batch_size])
            if double:
                enc = m.encoder
                feats = feats.double()
                feats[:, enc.n_bits:] = torch.round(feats[:, enc.n_bits:] / enc.composition_scale) * enc.composition_scale
            out.append(m(feats).double().numpy())
    return np.concatenate(out)


def check(old, new, smiles: list[str]) -> dict:
    o64, n64 = predictions(old, smiles, 1024, double=True), predictions(new, smiles, 1024, double=True)
    report = {"molecules": len(smiles), "old_vs_new_float64_max_sigma": float(np.abs(o64 - n64).max())}
    for label, model in (("old", old), ("new", new)):
        a, b = predictions(model, smiles, 1), predictions(model, smiles, 1024)
        report[f"{label}_float32_batch1_vs_1024_max_sigma"] = np.abs(a - b).max(0).round(6).tolist()
        report[f"{label}_float32_batch1_vs_1024_mean_sigma"] = np.abs(a - b).mean(0).round(6).tolist()
        report[f"{label}_float32_vs_float64_max_sigma"] = np.abs(b - (o64 if label == "old" else n64)).max(0).round(6).tolist()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True, help="a new directory (not the checkpoint itself)")
    parser.add_argument("--check", help="a CSV (optionally .gz) with a SMILES column: measure old vs new on it")
    parser.add_argument("--n-check", type=int, default=5000)
    args = parser.parse_args(argv)

    source = resolve_reward_checkpoint(args.checkpoint)
    out = Path(args.out)
    if out.resolve() == source.resolve():
        raise SystemExit(f"--out {out} is the checkpoint itself: write to a new directory, then move it")
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"--out {out} exists and is not empty")
    old = load_reward_model(source)
    new = load_reward_model(source)
    before = new.heads[0].weight.detach()[:, -new.encoder.n_composition:].clone()
    fold(new)
    after = new.heads[0].weight.detach()[:, -new.encoder.n_composition:].clone()

    from lightning_modules.reward_io import save_reward_model

    out.mkdir(parents=True, exist_ok=True)
    save_reward_model(new, out, card=dict(old.card))  # the standardisation buffers travel with the weights
    written = json.loads((out / "config.json").read_text())
    for extra in source.iterdir():  # README, domain files …
        if extra.name not in ("config.json", "model.safetensors") and extra.is_file():
            shutil.copyfile(extra, out / extra.name)
            honour_umask(out / extra.name)
    summary = {"largest_head_weight_before": float(before.abs().max()),
               "largest_head_weight_after_on_H_C_N_O_F_bonds_rings": float(after[:, [0, 1, 2, 3, 4, *range(10, after.shape[1])]].abs().max())}
    if args.check:
        import pandas as pd

        frame = pd.read_csv(args.check)
        column = next(c for c in frame.columns if c.lower() == "smiles")
        smiles = frame[column].sample(min(args.n_check, len(frame)), random_state=0).tolist()
        reloaded = load_reward_model(out)
        summary.update(check(old, reloaded, smiles))
    written.setdefault("card", {})["heavy_atom_column_dropped"] = {
        "from": str(args.checkpoint), "command": "python benchmarks/drop_heavy_atom_column.py " + " ".join(argv or sys.argv[1:]),
        **summary}
    (out / "config.json").write_text(json.dumps(written, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
