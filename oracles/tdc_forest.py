"""TDC's JNK3 and GSK3β oracles, reproduced exactly without pickle or scikit-learn.

TDC scores a molecule with a scikit-learn random forest over RDKit Morgan bits (radius 2, 2,048
bits): ``predict_proba(X)[:, 1]``. The forests were converted once (``oracles/convert_tdc_forest.py``,
SHA-256 checked) into ``oracles/assets/tdc_{jnk3,gsk3b}.npz``; :class:`ForestOracle` walks all trees
for a whole batch at once with numpy and averages the leaf class frequencies in tree order, as
scikit-learn does, so the probabilities equal TDC's (tested to 1e-9 on 1,000 molecules).

The raw value is the activity probability (higher is better); the default energy is its negation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rdkit import DataStructs
from rdkit.Chem import rdFingerprintGenerator

from oracles.base import MoleculeOracle
from oracles.transforms import Negate, Transform

ASSETS = Path(__file__).parent / "assets"


def morgan_features(mols, radius: int = 2, n_bits: int = 2048) -> np.ndarray:
    """float32 [n, n_bits] Morgan bit vectors (the input TDC's forests were trained on)."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(mols), n_bits), dtype=np.float32)
    row = np.zeros(n_bits, dtype=np.float64)
    for i, mol in enumerate(mols):
        DataStructs.ConvertToNumpyArray(generator.GetFingerprint(mol), row)
        out[i] = row
    return out


class Forest:
    """Flat arrays of a converted random forest, and exact batched ``predict_proba``."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"converted forest not found: {path} (see oracles/convert_tdc_forest.py)")
        with np.load(path, allow_pickle=False) as data:
            self.left, self.right = data["left"], data["right"]
            self.feature, self.threshold = data["feature"], data["threshold"]
            value = data["value"]
            self.roots = data["roots"]
            self.n_features = int(data["n_features"])
        totals = value.sum(1, keepdims=True)
        self.leaf_proba = value / np.where(totals == 0, 1.0, totals)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected features of shape [n, {self.n_features}], got {X.shape}")
        rows = np.arange(X.shape[0])[:, None]
        nodes = np.broadcast_to(self.roots, (X.shape[0], self.roots.size)).copy()
        while True:
            internal = self.left[nodes] >= 0
            if not internal.any():
                break
            go_left = X[rows, np.where(internal, self.feature[nodes], 0)] <= self.threshold[nodes]
            nodes = np.where(internal, np.where(go_left, self.left[nodes], self.right[nodes]), nodes)
        proba = np.zeros((X.shape[0], self.leaf_proba.shape[1]))
        for t in range(nodes.shape[1]):  # accumulate in tree order, as scikit-learn does
            proba += self.leaf_proba[nodes[:, t]]
        return proba / nodes.shape[1]


def _converted(pickle_path: Path) -> Path:
    import os
    import tempfile

    from networks.files import cache_root, file_sha256, honour_umask
    from oracles.convert_tdc_forest import convert

    if not pickle_path.is_file():
        raise FileNotFoundError(f"forest pickle not found: {pickle_path}")
    root = cache_root() / "forests"
    target = root / f"{file_sha256(pickle_path)}.npz"
    if not target.is_file():
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=root)
        os.close(fd)
        honour_umask(tmp)  # mkstemp's 0600 would stay on the cached file
        try:
            convert(pickle_path, Path(tmp))
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


class ForestOracle(MoleculeOracle):
    """Activity probability from a converted random forest over Morgan bits (r=2, 2,048)."""

    name = "forest"

    def __init__(self, path: str, transform: Transform | None = None, penalty: float = 0.0, **kwargs):
        super().__init__(transform=transform or Negate(), penalty=penalty, **kwargs)
        self.path = str(path)
        self._forest: Forest | None = None

    def __getstate__(self):
        state = super().__getstate__()
        state["_forest"] = None
        return state

    @property
    def forest(self) -> Forest:
        """The converted forest; a TDC ``.pkl`` path (e.g. from TDC's cache or a molscore wheel) is
        SHA-256-checked and converted on first use into the rewardfit cache."""
        if self._forest is None:
            path = Path(self.path).expanduser()
            if path.suffix == ".pkl":
                path = _converted(path)
            self._forest = Forest(path)
        return self._forest

    def compute_batch(self, mols):
        """One forest pass over the whole batch."""
        out = np.full(len(mols), np.nan)
        ok = [i for i, mol in enumerate(mols) if mol is not None]
        if ok:
            out[ok] = self.forest.predict_proba(morgan_features([mols[i] for i in ok]))[:, 1]
        return out


class JNK3(ForestOracle):
    """TDC's JNK3 oracle (P(active)); energy −P by default, penalty 0 (= P of 0) for invalid input."""

    name = "jnk3"

    def __init__(self, path: str = str(ASSETS / "tdc_jnk3.npz"), **kwargs):
        super().__init__(path, **kwargs)


class GSK3B(ForestOracle):
    """TDC's GSK3β oracle (P(active)); energy −P by default, penalty 0 for invalid input."""

    name = "gsk3b"

    def __init__(self, path: str = str(ASSETS / "tdc_gsk3b.npz"), **kwargs):
        super().__init__(path, **kwargs)
