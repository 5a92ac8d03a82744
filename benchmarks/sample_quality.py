"""The MOSES-style quality table of a molecular checkpoint (issue 4's acceptance numbers).

    python benchmarks/sample_quality.py --model checkpoints/molgpt-moses [--n 10000] [--top-k 0 5]
    python benchmarks/sample_quality.py --model checkpoints/molgpt-chembl --data chembl

Samples n molecules at temperature 1 (``--temperature``: another; issue 28's bar is at 1)
(without top-k, then with each given top-k) and reports
validity, uniqueness, novelty (vs the training set), IntDiv1 (and the held-out set's own IntDiv1
on a random n of them for comparison) and FCD to the whole held-out set, as MOSES defines FCD/Test
(needs fcd-torch; the ChemNet statistics of the held-out set are cached after the first run,
``--fcd-reference N`` uses a seeded random N instead). Prints Markdown. The sets: MOSES train and
test (``--data moses``), or the shipped ChEMBL v31 training subset and its validation set
(``--data chembl``), or for a model trained on the extended split (``ChemblDataModule(split=
"extended")``) its 140k training SMILES and the 10,000 it holds out (``--data chembl-extended``).
Subsets are random, never the first rows: the MOSES files are ordered, and their first 10,000
test molecules are ≈ 4 FCD from the whole test set. ``--training-row`` adds a row for n random
training molecules: the FCD floor at this n (ChEMBL, n = 10,000: 0.38). ``--extra-training FILE…``
adds files to the novelty reference (a model distilled from its own samples,
``benchmarks/valid_samples.py``, is judged against those too; all reference strings are then
canonicalised). A second table splits each row's invalid samples by cause
(``oracles.canonical.smiles_failure``: unclosed ring, other syntax, kekulisation, valence, …),
as fractions of all samples. ``--csv FILE`` appends each row to FILE as well (with the weights'
digest, the settings and the date; the header is written when FILE is new), so that a study's
rows collect in one results CSV (e.g. docs/results/chembl_prior_frontier.csv).
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datamodules.sources import chembl_extended_split, chembl_path, moses_path, read_records  # noqa: E402
from lightning_modules.metrics import (  # noqa: E402
    InternalDiversity,
    Novelty,
    Uniqueness,
    Validity,
    chemnet_statistics,
    frechet_chemnet_distance,
)
from networks.architectures import Pretrained, resolve_checkpoint  # noqa: E402
from networks.files import cache_root, weights_digest  # noqa: E402
from networks.sampling import sample  # noqa: E402
from networks.tokenizers import load_tokenizer  # noqa: E402
from oracles.canonical import SMILES_FAILURES, smiles_failure  # noqa: E402


# (training set for novelty, held-out set for FCD and IntDiv1) per data set
DATA_SETS = {
    "moses": (lambda: read_records(moses_path("train"), "SMILES"), lambda: read_records(moses_path("test"), "SMILES")),
    "chembl": (lambda: read_records(chembl_path("train")), lambda: read_records(chembl_path("valid"))),
    # models trained with ChemblDataModule(split="extended"): 140k training, 10k held out
    "chembl-extended": (lambda: read_records(chembl_extended_split()["train"]),
                        lambda: read_records(chembl_extended_split()["holdout"])),
}


# the columns of --csv, in order
CSV_FIELDS = ["label", "weights_sha256", "data", "n", "temperature", "seed", "fcd_reference", "date", "top_k",
              "validity", "uniqueness", "novelty", "intdiv1", "fcd"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--top-k", type=int, nargs="+", default=[0, 5])
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="sampling temperature of every row (default 1: the model's own distribution)")
    parser.add_argument("--data", choices=sorted(DATA_SETS), default="moses")
    parser.add_argument("--fcd-reference", default="all",
                        help="'all' (MOSES's FCD/Test: the whole held-out set) or a number of random held-out molecules")
    parser.add_argument("--training-row", action="store_true",
                        help="first a row for n random training molecules in place of samples: the FCD a model "
                             "sampling its training distribution exactly would get at this n (the floor)")
    parser.add_argument("--extra-training", nargs="+", default=[], metavar="FILE",
                        help="further training files (one SMILES a line) for novelty: a model trained on its own "
                             "samples too (benchmarks/valid_samples.py) is judged against them as well")
    parser.add_argument("--csv", type=Path, default=None, metavar="FILE",
                        help="append every row to this CSV too (header written when the file is new)")
    parser.add_argument("--label", default="",
                        help="a name for this model in the CSV's label column (default: the model path)")
    args = parser.parse_args()
    if args.csv is not None and args.csv.resolve() == Path(args.model).resolve():
        parser.error("--csv is the model path")
    if not args.temperature > 0:
        parser.error(f"--temperature must be > 0, got {args.temperature}")
    if args.csv is not None and args.csv.is_file() and args.csv.stat().st_size:
        with open(args.csv, newline="") as handle:
            header = next(csv.reader(handle), [])
        if header != CSV_FIELDS:  # before sampling, not after: never append rows under another file's header
            parser.error(f"--csv {args.csv} has the columns {header}, not this script's {CSV_FIELDS}: "
                         "name a new file")
    train_records, held_out_records = DATA_SETS[args.data]

    directory = resolve_checkpoint(args.model)
    tok = load_tokenizer(directory)
    model = Pretrained(str(directory)).build(tok).eval()
    held_out = list(held_out_records())
    rng = np.random.default_rng(args.seed)

    def random_subset(k: int) -> list[str]:
        return [held_out[i] for i in rng.choice(len(held_out), min(k, len(held_out)), replace=False)]

    test = random_subset(args.n)
    fcd_set = held_out if args.fcd_reference == "all" else random_subset(int(args.fcd_reference))
    # sampled strings are not canonical: with extra files every reference string is canonicalised
    novelty = Novelty(itertools.chain(train_records(), *(read_records(f) for f in args.extra_training)),
                      canonicalize_reference=bool(args.extra_training))
    test_intdiv = InternalDiversity()
    test_intdiv.update(test)
    print(f"model {directory}, {args.n} samples per row, {args.data} held-out IntDiv1 (random n={len(test)}): "
          f"{float(test_intdiv.compute()):.4f}; FCD reference: {len(fcd_set):,} held-out molecules; "
          f"temperature {args.temperature:g}")
    fcd_reference, fcd_missing = None, None
    try:
        start = time.perf_counter()
        fcd_reference = chemnet_statistics(fcd_set, cache_dir=cache_root() / "fcd")
        print(f"ChemNet statistics of the FCD reference: {time.perf_counter() - start:.0f} s", flush=True)
    except (ImportError, ValueError) as err:
        fcd_missing = f"n/a ({type(err).__name__})"
    print("| top-k | validity | uniqueness | novelty | IntDiv1 | FCD/held-out | samples/s |\n|---|---|---|---|---|---|---|")

    csv_common = dict(label=args.label or args.model, weights_sha256=weights_digest(directory) or "",
                      data=args.data, n=args.n, temperature=args.temperature, seed=args.seed,
                      fcd_reference=args.fcd_reference, date=datetime.date.today().isoformat())

    def append_csv(top_k: str, values: dict) -> None:
        if args.csv is None:
            return
        row = dict(csv_common, top_k=top_k, **values)
        new = not args.csv.is_file() or args.csv.stat().st_size == 0
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)

    def cells(texts: list[str], top_k: str) -> str:  # validity, uniqueness, novelty, IntDiv1, FCD of one row
        values = {}
        for name, metric in (("validity", Validity()), ("uniqueness", Uniqueness()), ("novelty", novelty),
                             ("intdiv1", InternalDiversity())):
            metric.reset()
            metric.update(texts)
            values[name] = round(float(metric.compute()), 4)
        values["fcd"] = None if fcd_missing else round(frechet_chemnet_distance(texts, fcd_reference), 3)
        append_csv(top_k, values)
        return " | ".join([*(f"{values[k]:.4f}" for k in ("validity", "uniqueness", "novelty", "intdiv1")),
                           fcd_missing or f"{values['fcd']:.3f}"])

    failures: dict[str, collections.Counter] = {}

    if args.training_row:
        training = list(train_records())
        texts = [training[i] for i in np.random.default_rng(args.seed + 1).choice(len(training), args.n, replace=False)]
        print(f"| training data, {args.n:,} random | {cells(texts, 'training data')} | |", flush=True)
    for top_k in args.top_k:
        start = time.perf_counter()
        texts = sample(model, tok, args.n, args.max_new_tokens, temperature=args.temperature, top_k=top_k or None,
                       generator=torch.Generator().manual_seed(args.seed)).texts
        rate = args.n / (time.perf_counter() - start)
        print(f"| {top_k or 'none'} | {cells(texts, str(top_k or 'none'))} | {rate:,.0f} |", flush=True)
        failures[top_k or "none"] = collections.Counter(map(smiles_failure, texts))
    causes = [c for c in SMILES_FAILURES if any(f[c] for f in failures.values())]
    print("\ninvalid samples by cause (fraction of all samples):\n")
    print("| top-k | " + " | ".join(causes) + " |\n|---|" + "---|" * len(causes))
    for top_k, counts in failures.items():
        print(f"| {top_k} | " + " | ".join(f"{counts[c] / args.n:.4f}" for c in causes) + " |")


if __name__ == "__main__":
    main()
