"""A Morgan-fingerprint activity classifier trained on your own labels, served as an oracle.

For users who want their own split of the JNK3/GSK3β (ExCAPE) labels, or any binary activity
CSV: train an MLP on Morgan bits (radius 2, 2,048), report held-out AUROC, save the weights as
safetensors with a JSON card, and score molecules with :class:`FingerprintClassifier`
(raw value = P(active); energy −P by default).

    python -m oracles.fingerprint_classifier --data all.txt --label jnk3 --out oracles/assets/excape_jnk3

Labels of duplicate molecules (after canonicalisation) are merged as "active if any is active".
Splits: ``random`` (seeded) or ``scaffold`` (Bemis–Murcko scaffolds kept on one side, largest
scaffold groups in training, as is usual), 80/10/10.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torchmetrics.classification import BinaryAUROC

from networks.files import honour_umask
from oracles.base import MoleculeOracle
from oracles.canonical import canonical_smiles
from oracles.tdc_forest import morgan_features
from oracles.transforms import Negate, Transform


def build_mlp(n_bits: int = 2048, hidden: int = 256, dropout: float = 0.2) -> nn.Module:
    return nn.Sequential(nn.Linear(n_bits, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))


def split_indices(smiles: list[str], kind: str, seed: int) -> dict[str, np.ndarray]:
    n = len(smiles)
    if kind == "random":
        order = np.random.default_rng(seed).permutation(n)
        a, b = int(0.8 * n), int(0.9 * n)
        return {"train": order[:a], "val": order[a:b], "test": order[b:]}
    if kind != "scaffold":
        raise ValueError(f"split must be random or scaffold, got {kind!r}")
    from rdkit.Chem.Scaffolds import MurckoScaffold

    groups: dict[str, list[int]] = {}
    for i, s in enumerate(smiles):
        groups.setdefault(MurckoScaffold.MurckoScaffoldSmiles(smiles=s), []).append(i)
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0]))
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for group in ordered:
        part = "train" if len(out["train"]) + len(group) <= 0.8 * n else (
            "val" if len(out["val"]) + len(group) <= 0.1 * n else "test")
        out[part].extend(group)
    return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}


def train_classifier(data: str, label: str, out: str, smiles_column: str = "smiles", split: str = "random",
                     seed: int = 0, epochs: int = 8, hidden: int = 256, batch_size: int = 256,
                     lr: float = 1e-3) -> dict:
    frame = pd.read_csv(data)
    for column in (smiles_column, label):
        if column not in frame:
            raise ValueError(f"{data}: no column {column!r}; columns are {list(frame.columns)}")
    frame["canonical"] = [canonical_smiles(s) for s in frame[smiles_column]]
    n_invalid = int(frame["canonical"].isna().sum())
    frame = frame.dropna(subset=["canonical"]).groupby("canonical", as_index=False)[label].max()
    smiles, y = frame["canonical"].tolist(), torch.tensor(frame[label].to_numpy(), dtype=torch.float32)
    from rdkit import Chem

    X = torch.from_numpy(morgan_features([Chem.MolFromSmiles(s) for s in smiles]))
    parts = split_indices(smiles, split, seed)
    torch.manual_seed(seed)
    model = build_mlp(X.shape[1], hidden)
    pos = float(y[parts["train"]].sum())
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(parts["train"]) - pos) / max(pos, 1.0)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    best, best_state = -1.0, None

    def auroc(idx):
        model.eval()
        with torch.no_grad():
            return float(BinaryAUROC()(model(X[idx]).squeeze(1).sigmoid(), y[idx].long()))

    for _ in range(epochs):
        model.train()
        train = torch.from_numpy(parts["train"])[torch.randperm(len(parts["train"]), generator=generator)]
        for start in range(0, len(train), batch_size):
            idx = train[start:start + batch_size]
            loss = loss_fn(model(X[idx]).squeeze(1), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        val = auroc(parts["val"])
        if val > best:
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    card = {"data": str(data), "label": label, "split": split, "seed": seed, "epochs": epochs, "hidden": hidden,
            "n_molecules": len(smiles), "n_active": int(y.sum()), "n_invalid_dropped": n_invalid,
            "sizes": {k: len(v) for k, v in parts.items()}, "val_auroc": best, "test_auroc": auroc(parts["test"]),
            "features": "Morgan bits, radius 2, 2048"}
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / "model.safetensors"))
    honour_umask(out_dir / "model.safetensors")  # safetensors writes 0600
    (out_dir / "card.json").write_text(json.dumps(card, indent=1))
    return card


class FingerprintClassifier(MoleculeOracle):
    """P(active) from a classifier trained by :func:`train_classifier`; U = −P by default."""

    name = "classifier"

    def __init__(self, path: str, transform: Transform | None = None, penalty: float = 0.0, **kwargs):
        super().__init__(transform=transform or Negate(), penalty=penalty, **kwargs)
        directory = Path(path).expanduser()
        if not directory.is_absolute() and not directory.exists():  # e.g. oracles/assets/… from elsewhere
            directory = Path(__file__).resolve().parents[1] / directory
        self.path = str(directory)
        if not (directory / "model.safetensors").is_file() or not (directory / "card.json").is_file():
            raise FileNotFoundError(f"{directory} needs model.safetensors and card.json (see train_classifier)")
        self._model = None

    def __getstate__(self):
        state = super().__getstate__()
        state["_model"] = None
        return state

    def compute_batch(self, mols):
        out = np.full(len(mols), np.nan)
        ok = [i for i, mol in enumerate(mols) if mol is not None]
        if not ok:
            return out
        if self._model is None:
            card = json.loads((Path(self.path) / "card.json").read_text())
            model = build_mlp(2048, card["hidden"])
            model.load_state_dict(load_file(str(Path(self.path) / "model.safetensors")))
            self._model = model.eval()
        with torch.no_grad():
            features = torch.from_numpy(morgan_features([mols[i] for i in ok]))
            out[ok] = self._model(features).squeeze(1).sigmoid().double().numpy()
        return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--smiles-column", default="smiles")
    parser.add_argument("--split", default="random", choices=["random", "scaffold"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args(argv)
    card = train_classifier(args.data, args.label, args.out, args.smiles_column, args.split, args.seed, args.epochs)
    print(json.dumps(card, indent=1))


if __name__ == "__main__":
    main()
