"""Convert TDC's JNK3/GSK3β random forests (scikit-learn pickles) into safe array files, once.

    python -m oracles.convert_tdc_forest jnk3_current.pkl oracles/assets/tdc_jnk3.npz

Why: current scikit-learn cannot load these pickles, and loading a pickle runs code. This script
checks the file's SHA-256 against TDC's known files *before* reading it, and then reads it with a
restricted unpickler that builds inert stand-ins for scikit-learn classes and allows nothing but
numpy array reconstruction — no scikit-learn is needed and no code from the file runs. Each tree's
children, split feature, threshold and class counts go into one compressed ``.npz`` that
:class:`oracles.tdc_forest.ForestOracle` scores with plain numpy. (The shipped ``.npz`` files were
first made with scikit-learn 1.2.2 itself; this reader gives identical arrays, which is tested.)
"""

from __future__ import annotations

import argparse
import copyreg
import importlib
import pickle
from pathlib import Path

import numpy as np

from networks.files import file_sha256

KNOWN_SHA256 = {
    "cde8576fb4fa3f60b9f258ff9cf1b9ff346eb50d196d5cbbe25965efc1864889": "jnk3_current.pkl (TDC JNK3)",
    "d3a20701b80e5179c88c3ad4dc3483dd7ab35c50dc055c6773a7f5b63e89b6d5": "gsk3b_current.pkl (TDC GSK3B)",
}


class _Inert:
    """Stand-in for a scikit-learn class: keeps constructor arguments and pickled state only."""

    def __init__(self, *args):
        self.args = args
        self.state = None

    def __setstate__(self, state):
        self.state = state


_NUMPY = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
          ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
          ("numpy._core.multiarray", "scalar")}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.split(".")[0] == "sklearn":
            return type(name, (_Inert,), {})
        if (module, name) in _NUMPY:
            return getattr(importlib.import_module(module.replace("numpy.core", "numpy._core")), name)
        if (module, name) == ("copyreg", "_reconstructor"):
            return copyreg._reconstructor
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a forest pickle")


def read_forest(path: Path) -> tuple[list[dict], np.ndarray]:
    """Per-tree arrays (left, right, feature, threshold, value) and the class labels."""
    with open(path, "rb") as handle:
        forest = _RestrictedUnpickler(handle).load()
    trees = []
    for estimator in forest.state["estimators_"]:
        tree = estimator.state["tree_"].state
        nodes = tree["nodes"]
        trees.append({"left": nodes["left_child"], "right": nodes["right_child"], "feature": nodes["feature"],
                      "threshold": nodes["threshold"], "value": tree["values"][:, 0, :]})
    return trees, np.asarray(forest.state["classes_"])


def convert(pickle_path: Path, out: Path, allow_unknown: bool = False) -> Path:
    digest = file_sha256(pickle_path)
    if digest not in KNOWN_SHA256 and not allow_unknown:
        raise ValueError(f"{pickle_path} has SHA-256 {digest}, not one of TDC's forests; refusing to unpickle")
    trees, classes = read_forest(pickle_path)
    lefts, rights, features, thresholds, values, roots = [], [], [], [], [], []
    offset = 0
    for tree in trees:
        left, right = tree["left"].astype(np.int64), tree["right"].astype(np.int64)
        lefts.append(np.where(left >= 0, left + offset, -1))
        rights.append(np.where(right >= 0, right + offset, -1))
        features.append(tree["feature"].astype(np.int32))
        thresholds.append(tree["threshold"].astype(np.float64))
        values.append(tree["value"].astype(np.float64))
        roots.append(offset)
        offset += len(left)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, left=np.concatenate(lefts).astype(np.int32), right=np.concatenate(rights).astype(np.int32),
        feature=np.concatenate(features), threshold=np.concatenate(thresholds),
        value=np.concatenate(values), roots=np.asarray(roots, dtype=np.int32),
        classes=classes, source_sha256=np.asarray(digest),
        n_features=np.asarray(2048),
    )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pickle", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--allow-unknown", action="store_true", help="convert a pickle of unknown hash (unsafe)")
    args = parser.parse_args(argv)
    print(convert(args.pickle, args.out, args.allow_unknown))


if __name__ == "__main__":
    main()
