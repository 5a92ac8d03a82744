"""Convert TDC's JNK3/GSK3β random forests (scikit-learn pickles) into safe array files, once.

    python -m oracles.convert_tdc_forest jnk3_current.pkl oracles/assets/tdc_jnk3.npz

Why: current scikit-learn cannot load these pickles, and loading a pickle runs code. This script
checks the file's SHA-256 against TDC's known files *before* unpickling, then writes each tree's
children, split feature, threshold and class counts into one compressed ``.npz`` that
:class:`oracles.tdc_forest.ForestOracle` scores with plain numpy. Run it in an environment that
can unpickle them (scikit-learn 1.2.2 with numpy < 2); the shipped ``.npz`` files were made so.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
from pathlib import Path

import numpy as np

KNOWN_SHA256 = {
    "cde8576fb4fa3f60b9f258ff9cf1b9ff346eb50d196d5cbbe25965efc1864889": "jnk3_current.pkl (TDC JNK3)",
    "d3a20701b80e5179c88c3ad4dc3483dd7ab35c50dc055c6773a7f5b63e89b6d5": "gsk3b_current.pkl (TDC GSK3B)",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert(pickle_path: Path, out: Path, allow_unknown: bool = False) -> Path:
    digest = sha256(pickle_path)
    if digest not in KNOWN_SHA256 and not allow_unknown:
        raise ValueError(f"{pickle_path} has SHA-256 {digest}, not one of TDC's forests; refusing to unpickle")
    with open(pickle_path, "rb") as handle:
        forest = pickle.load(handle)  # noqa: S301 — hash checked above
    lefts, rights, features, thresholds, values, roots = [], [], [], [], [], []
    offset = 0
    for tree in (est.tree_ for est in forest.estimators_):
        left, right = tree.children_left.astype(np.int64), tree.children_right.astype(np.int64)
        lefts.append(np.where(left >= 0, left + offset, -1))
        rights.append(np.where(right >= 0, right + offset, -1))
        features.append(tree.feature.astype(np.int32))
        thresholds.append(tree.threshold.astype(np.float64))
        values.append(tree.value[:, 0, :].astype(np.float64))
        roots.append(offset)
        offset += tree.node_count
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, left=np.concatenate(lefts).astype(np.int32), right=np.concatenate(rights).astype(np.int32),
        feature=np.concatenate(features), threshold=np.concatenate(thresholds),
        value=np.concatenate(values), roots=np.asarray(roots, dtype=np.int32),
        classes=np.asarray(forest.classes_), source_sha256=np.asarray(digest),
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
