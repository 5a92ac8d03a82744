"""The ERA paper's kinase protocol (issue 28): ChEMBL prior → fine-tuned on a target's actives →
ERA on U = −p(target) (JNK3, or GSK3β with ``--target gsk3b``), as one resumable runner.

    python benchmarks/kinase_era.py sets [--excape /path/to/jnk3_gsk3b]   # score, write the sets
    python benchmarks/kinase_era.py run [--betas 50 100 200 400] [--seeds 0 1 2] [--dry-run]
    python benchmarks/kinase_era.py run --objective dpo --betas 0.1 1 [--seeds 0 1 2]  # the DPO baseline
    python benchmarks/kinase_era.py run --mode online [--betas ...]     # online ERA (or DPO): its own rounds
    python benchmarks/kinase_era.py run --target gsk3b ...; table --target gsk3b       # GSK3β (runs/kinase_gsk3b)
    python benchmarks/kinase_era.py run --target dual ...; table --target dual         # both (runs/kinase_dual)
    python benchmarks/kinase_era.py table [--csv docs/results/kinase_jnk3.csv] [--plot docs/img/kinase_jnk3_kl.png]
    python benchmarks/kinase_era.py summary --table jnk3=CSV gsk3b=CSV dual=CSV --csv OUT [--plot PNG]  # all targets
    python benchmarks/kinase_era.py nearest --csv OUT [--runs reference era_jnk3_b50_s0] [--plot PNG]  # whole nearest-active distribution, every run by default

``sets`` scores the shipped ChEMBL v31 molecules (50k training + 100k validation SMILES) — and,
with ``--excape``, the ExCAPE JNK3/GSK3β classifier sets (``jnk3/all.txt``, ``gsk3/all.txt`` of
Jin et al.'s data, not shipped) — with TDC's exact JNK3 and GSK3β forests (``oracles/tdc_forest.py``),
and writes under ``--out`` (``runs/kinase``): ``scores.csv.gz`` (one row per canonical molecule and
source), ``sets.json`` (counts), and per target the molecules scoring above 0.5 split at random
(seed 0) into ``{target}_finetune_train.txt`` and ``{target}_finetune_heldout.txt`` (10 %), plus
``{target}_known_actives.txt``: ExCAPE's label-1 molecules when ``--excape`` is given, else the
whole fine-tuning set. The paper's counts (7,386 JNK3 / 43,381 GSK3β) are over the full ChEMBL
(≈ 1.9M molecules); the shipped subset is 150k, so expect ≈ 8 % of those.

``run`` runs, in order and skipping every run whose ``eval.json`` exists (a killed run resumes
from its ``last.ckpt``): the fine-tuning of the prior on the target's fine-tuning set
(``configs/kinase/jnk3_finetune.yaml``, plus ``gsk3b_finetune.yaml`` for GSK3β), then offline ERA
from that model for each β and seed (``configs/kinase/jnk3_era.yaml``, plus ``gsk3b_era.yaml``;
one scored reference sample set per seed, shared by the βs).
After each run it evaluates the exported model on ``--eval-samples`` samples (T = 1, top-k of
``--top-k``) with one evaluation seed for all runs: mean target probability (invalid = 0, as TDC),
fraction above 0.5, validity, uniqueness, IntDiv1, the mean log-ratio log π − log π_ref on the
samples (KL(π‖π_ref) exactly without top-k), novelty against the fine-tuning set, and the median
over valid distinct samples of the Tanimoto similarity (Morgan r = 2, 2,048 bits) to the nearest
known active. The prior and the fine-tuned reference are evaluated the same way (rows ``prior``
and ``reference``). ``table`` collects every ``eval.json`` into the CSV (default
``<root>/kinase_<target>.csv``), with each run's fold over the reference's fraction above 0.5 and
whether it meets issue 28's bar (``BAR``: at least twice the reference's fraction, validity and
uniqueness ≥ 0.90, IntDiv1 within 0.05 of the reference's), and writes beside it
``<csv stem>_by_beta.csv`` (mean ± s.e. over seeds per β, and the seeds meeting the bar) and
``<csv stem>_trend.csv`` (Page's trend test over β per metric, each seed a block, as
``benchmarks/era_beta_curve.py``). ``summary`` puts several targets' tables on one page: a CSV, a
Markdown table and one plot of every objective's β path against KL.

Every training run and evaluation uses ``--threads`` CPU threads (default 1, as every measured
run): float rounding depends on the thread count, and a run made again with another count is a
different run (the online validity stage's step-100 export checks at 0.906 valid with 2 threads,
0.916 with 1, and 0.88 in the session that first made it: 1,000 samples each). Each row records
``threads`` and ``weights_sha256`` (the first 16 hex digits of the SHA-256 of the weights it
measured).

``run --objective dpo`` trains the DPO baseline (``dpo_{target}_b{β}_s{seed}``, DPO's own β) on
the same per-seed sample set and pairs as ERA, with the same (valid, invalid) term, steps and
learning rate. ``table`` then also writes ``<csv stem>_dpo_matched.csv``: each DPO run beside
ERA at the same mean score on its seed (ERA's metrics interpolated between its βs) — the
comparison at matched energy — and at the same KL to the reference, and prints the paired
differences (mean ± s.e., t-test p).

``--target dual`` is the paper's multi-property target: fine-tuning on the molecules above 0.5
on both kinases (``dual_finetune_*.txt``, written by ``sets``), ERA on U = −(p(JNK3) + p(GSK3β))/2
(``configs/era/tasks/dual.yaml``); its ``mean_score`` is that mean, its ``frac_above_0.5`` the
fraction of samples above 0.5 on both, and every row carries each kinase's mean (``mean_jnk3``,
``mean_gsk3b``); novelty and nearest-active similarity are against either kinase's known actives.

``run --mode online`` runs the same objective online (``configs/kinase/jnk3_era_online.yaml``
composed last: 256 fresh samples from the current policy every 10 steps; runs
``era_online_{target}_b{β}_s{seed}``, stage ``era_online``; ``dpo_online_*`` with
``--objective dpo``). ``table`` summarises and trend-tests each stage apart and writes, per
baseline stage, ``<csv stem>_<stage>_matched.csv`` against offline ERA's path (so
``_dpo_matched.csv`` and ``_era_online_matched.csv``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from networks.files import weights_digest, write_lines  # noqa: E402

TARGETS = ("jnk3", "gsk3b")
#: The dual target (the paper's multi-property one): both kinases at once. Its fine-tuning set is
#: the molecules above 0.5 on both; U = −(p(JNK3) + p(GSK3β))/2 (configs/era/tasks/dual.yaml); its
#: "fraction above 0.5" counts samples above 0.5 on both (RationaleRL's dual success); its known
#: actives are either kinase's.
DUAL = "dual"
THRESHOLD = 0.5
PAPER_COUNTS = {"jnk3": 7386, "gsk3b": 43381}
EXCAPE_FILES = {"jnk3": ("jnk3/all.txt", "jnk3"), "gsk3b": ("gsk3/all.txt", "gsk3")}
#: The share of distinct valid samples at Tanimoto ≥ 0.7 to their nearest known active (close
#: analogues), from the histogram each ``eval.json`` keeps (``nearest_active_hist``).
CLOSE_ANALOGUES = "nearest_active_share_0.7"
CSV_COLUMNS = ["run", "stage", "beta", "gamma", "variant", "seed", "step", "n_samples", "top_k", "mean_score",
               "frac_above_0.5", "validity", "uniqueness", "intdiv1", "kl_to_reference",
               "novelty_vs_finetune", "novelty_vs_known_actives", "nearest_active_sim_median",
               "nearest_active_sim_q90", CLOSE_ANALOGUES, "mean_jnk3", "mean_gsk3b", "threads", "weights_sha256",
               "model"]
#: Issue 28's bar for an aligned model, against the fine-tuned reference it started from: at
#: least ``fold`` times the reference's fraction of samples above 0.5 (on both kinases for the dual
#: target), validity and uniqueness at least these, IntDiv1 within ``intdiv1_within`` of the reference's.
BAR = {"fold": 2.0, "validity": 0.90, "uniqueness": 0.90, "intdiv1_within": 0.05}
#: Columns ``table`` adds to ``CSV_COLUMNS`` (``bar``): the fraction above 0.5 over the
#: reference's, and whether the run meets every term of ``BAR`` (empty for rows that are not runs).
BAR_COLUMNS = ["fold_vs_reference", "bar_met"]


# ------------------------------------------------------------------------------------------ sets
def oracle(target: str):
    from oracles.tdc_forest import GSK3B, JNK3

    return {"jnk3": JNK3, "gsk3b": GSK3B}[target]()


def target_scores(smiles: list[str], target: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Per sample: the target's score (the mean of both kinases' for ``dual``), whether it counts
    as above the threshold (both kinases above it for ``dual``), and each kinase's probability —
    invalid strings at 0, TDC's score for them."""
    per = {}
    for t in TARGETS:
        values = oracle(t)(smiles).values[t]
        per[t] = np.where(np.isfinite(values), values, 0.0)
    if target == DUAL:
        return (per["jnk3"] + per["gsk3b"]) / 2, (per["jnk3"] > THRESHOLD) & (per["gsk3b"] > THRESHOLD), per
    return per[target], per[target] > THRESHOLD, per


def canonical_unique(smiles) -> list[str]:
    """RDKit canonical forms of the parsable strings, first occurrence kept, order kept."""
    from oracles.canonical import canonical_smiles

    return list(dict.fromkeys(c for c in map(canonical_smiles, smiles) if c is not None))


def score(smiles: list[str], chunk: int = 5000) -> dict[str, np.ndarray]:
    """TDC's JNK3 and GSK3β probabilities of valid canonical SMILES (NaN where RDKit fails)."""
    from rdkit import Chem

    oracles = {t: oracle(t) for t in TARGETS}
    out = {t: np.full(len(smiles), np.nan) for t in TARGETS}
    for start in range(0, len(smiles), chunk):
        mols = [Chem.MolFromSmiles(s) for s in smiles[start:start + chunk]]
        for t, o in oracles.items():
            out[t][start:start + len(mols)] = o.compute_batch(mols)
    return out


def read_excape(directory: Path, target: str) -> pd.DataFrame:
    """ExCAPE's classifier set for ``target``: canonical ``smiles`` and 0/1 ``label`` (a molecule
    with both labels counts as active)."""
    name, column = EXCAPE_FILES[target]
    path = directory / name
    if not path.is_file():
        raise SystemExit(f"--excape {directory}: no {name} (expected Jin et al.'s data/ layout: jnk3/all.txt, gsk3/all.txt)")
    table = pd.read_csv(path)
    if "smiles" not in table or column not in table:
        raise SystemExit(f"{path}: expected columns smiles,{column}; got {list(table.columns)}")
    from oracles.canonical import canonical_smiles

    table["smiles"] = [canonical_smiles(s) for s in table["smiles"]]
    table = table.dropna(subset=["smiles"])
    return table.groupby("smiles", sort=False)[column].max().rename("label").reset_index()


def split_set(smiles: list[str], held_out: float, seed: int) -> tuple[list[str], list[str]]:
    """Sorted, then a seeded permutation: the split depends on the set, not on the files' order."""
    ordered = sorted(set(smiles))
    perm = np.random.default_rng(seed).permutation(len(ordered))
    n_held = int(round(held_out * len(ordered)))
    held = sorted(ordered[i] for i in perm[:n_held])
    return sorted(ordered[i] for i in perm[n_held:]), held


def make_sets(out: Path, excape: Path | None, held_out: float = 0.1, seed: int = 0,
              chembl: dict[str, list[str]] | None = None) -> dict:
    """Scores, counts and the fine-tuning sets (see the module docstring). ``chembl`` maps a split
    name to SMILES (default: the shipped ChEMBL v31 files)."""
    if chembl is None:
        from datamodules.sources import chembl_path, read_records

        chembl = {split: list(read_records(chembl_path(split))) for split in ("train", "valid")}
    frames = []
    for split, smiles in chembl.items():
        canon = canonical_unique(smiles)
        frames.append(pd.DataFrame({"smiles": canon, "source": f"chembl_{split}", "n_input": len(smiles)}))
    excape_tables = {t: read_excape(excape, t) for t in TARGETS} if excape else {}
    for t, table in excape_tables.items():
        frames.append(pd.DataFrame({"smiles": table["smiles"], "source": f"excape_{t}",
                                    f"label_{t}": table["label"].to_numpy()}))
    scores = pd.concat(frames, ignore_index=True)
    distinct = list(dict.fromkeys(scores["smiles"]))
    values = score(distinct)
    for t in TARGETS:
        scores[t] = scores["smiles"].map(dict(zip(distinct, values[t])))
    out.mkdir(parents=True, exist_ok=True)
    scores.drop(columns="n_input").to_csv(out / "scores.csv.gz", index=False)

    counts: dict = {"threshold": THRESHOLD, "held_out_fraction": held_out, "split_seed": seed,
                    "paper_chembl_counts": PAPER_COUNTS, "sources": {}}
    for source, group in scores.groupby("source", sort=False):
        counts["sources"][source] = {"molecules": len(group), **{
            f"{t}_above": int((group[t] > THRESHOLD).sum()) for t in TARGETS}}
    chembl_rows = scores[scores["source"].str.startswith("chembl_")].drop_duplicates("smiles")
    counts["chembl_all"] = {"molecules": len(chembl_rows),
                            **{f"{t}_above": int((chembl_rows[t] > THRESHOLD).sum()) for t in TARGETS}}
    for t in TARGETS:
        above = scores.loc[scores[t] > THRESHOLD, "smiles"].tolist()
        train, held = split_set(above, held_out, seed)
        write_lines(out / f"{t}_finetune_train.txt", train)
        write_lines(out / f"{t}_finetune_heldout.txt", held)
        if t in excape_tables:
            table = excape_tables[t]
            known = sorted(set(table.loc[table["label"] == 1, "smiles"]))
            known_from = "excape label 1"
        else:
            known, known_from = sorted(set(above)), "the fine-tuning set (no --excape)"
        write_lines(out / f"{t}_known_actives.txt", known)
        counts[t] = {"finetune_set": len(set(above)), "train": len(train), "held_out": len(held),
                     "known_actives": len(known), "known_actives_from": known_from}
        if t in excape_tables:
            table = excape_tables[t]
            labelled = scores[(scores["source"] == f"excape_{t}")]
            counts[t]["excape_label1_above"] = int(((labelled[f"label_{t}"] == 1) & (labelled[t] > THRESHOLD)).sum())
            counts[t]["excape_label1"] = int((table["label"] == 1).sum())
    counts[DUAL] = make_dual_set(scores, out, held_out, seed)
    (out / "sets.json").write_text(json.dumps(counts, indent=1) + "\n")
    return counts


def make_dual_set(scores: pd.DataFrame, out: Path, held_out: float = 0.1, seed: int = 0) -> dict:
    """The dual target's files in ``out`` from the scored molecules (``scores.csv.gz``'s columns
    ``smiles``, ``jnk3``, ``gsk3b``): the molecules above the threshold on both kinases, split as
    the single targets, and either kinase's known actives (their files must exist). Its counts."""
    both = scores.loc[(scores["jnk3"] > THRESHOLD) & (scores["gsk3b"] > THRESHOLD), "smiles"].tolist()
    train, held = split_set(both, held_out, seed)
    write_lines(out / f"{DUAL}_finetune_train.txt", train)
    write_lines(out / f"{DUAL}_finetune_heldout.txt", held)
    known = sorted(set(read_lines(out / "jnk3_known_actives.txt")) | set(read_lines(out / "gsk3b_known_actives.txt")))
    write_lines(out / f"{DUAL}_known_actives.txt", known)
    return {"finetune_set": len(set(both)), "train": len(train), "held_out": len(held),
            "known_actives": len(known), "known_actives_from": "either kinase's known actives"}


# ---------------------------------------------------------------------------------- evaluation
def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def nearest_similarity(smiles: list[str], actives: list[str]) -> np.ndarray:
    """Each molecule's Tanimoto similarity (Morgan r = 2, 2,048 bits) to its nearest active (NaN
    for an unparsable one, or when there are no actives): ``oracles.domain``'s nearest neighbour."""
    from oracles import domain

    reference, known = domain.fingerprints(actives, "smiles")
    queries, valid = domain.fingerprints(smiles, "smiles")
    out = np.full(len(smiles), np.nan)
    if known.any() and valid.any():
        out[valid] = domain.nearest_similarity(queries[valid], reference[known])
    return out


def evaluation_draw(model_dir: Path, n: int, top_k: int | None, seed: int, max_new_tokens: int = 100, tok=None):
    """The ``n`` samples a model's evaluation scores (T = 1, ``top_k``, generator seed ``seed``), with
    their log-probabilities: the same draw every time on the same thread count. ``tok``: the
    model's tokenizer, when the caller has it loaded already."""
    import torch

    from networks.architectures import Pretrained
    from networks.sampling import sample
    from networks.tokenizers import load_tokenizer

    tok = tok or load_tokenizer(str(model_dir))
    model = Pretrained(str(model_dir)).build(tok).eval()
    return sample(model, tok, n, max_new_tokens, top_k=top_k, generator=torch.Generator().manual_seed(seed),
                  return_model_logprobs=True)


def evaluate(model_dir: Path, reference_dir: Path, target: str, finetune: list[str], actives: list[str],
             n: int, top_k: int | None, seed: int, max_new_tokens: int = 100) -> dict:
    """The CSV's numbers for one model (see the module docstring)."""
    from lightning_modules.metrics import InternalDiversity, Novelty, validity_and_uniqueness
    from networks.architectures import Pretrained
    from networks.sampling import scoring_logprob
    from networks.tokenizers import load_tokenizer
    from oracles.canonical import canonical_smiles

    tok = load_tokenizer(str(model_dir))
    batch = evaluation_draw(model_dir, n, top_k, seed, max_new_tokens, tok=tok)
    reference = Pretrained(str(reference_dir)).build(tok).eval()
    ref_lp = scoring_logprob(reference, batch.input_ids, batch.attention_mask)
    canon = [canonical_smiles(s) for s in batch.texts]
    valid = [c for c in canon if c is not None]
    scores, above, per_kinase = target_scores(batch.texts, target)
    intdiv = InternalDiversity()
    intdiv.update(valid)
    novelty = {}
    for name, ref in (("finetune", finetune), ("known_actives", actives)):
        metric = Novelty(ref, canonicalize_reference=False)  # both sets are written canonical
        metric.update(valid)
        novelty[name] = float(metric.compute())
    near = nearest_record(nearest_similarity(list(dict.fromkeys(valid)), actives))
    return {"n_samples": n, "top_k": top_k or 0, "mean_score": float(scores.mean()),
            "frac_above_0.5": float(above.mean()),
            **validity_and_uniqueness(batch.texts), "intdiv1": float(intdiv.compute()),
            "kl_to_reference": float((batch.model_logprobs - ref_lp).mean()),
            "novelty_vs_finetune": novelty["finetune"], "novelty_vs_known_actives": novelty["known_actives"],
            "nearest_active_sim_median": near["median"], "nearest_active_sim_q90": near["q90"],
            **{f"mean_{t}": float(v.mean()) for t, v in per_kinase.items()}, "model": str(model_dir),
            # the whole distribution (``nearest`` reads it instead of drawing the samples again)
            "nearest_active_hist": [near[c] for c in BIN_COLUMNS]}


# ----------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    """One training run: its directory, configs (base first) and command-line overrides."""

    name: str
    stage: str
    configs: list[str]
    overrides: list[str] = field(default_factory=list)
    beta: float = float("nan")
    gamma: float = float("nan")
    seed: int = 0
    #: what sets the run apart from its stage's main sweep ("" for the sweep): e.g. ``iw3``, the
    #: invalid term's weight 3
    variant: str = ""

    def directory(self, root: Path) -> Path:
        return root / self.name

    def command(self, root: Path, python: str = sys.executable) -> list[str]:
        run_dir = self.directory(root)
        cmd = [python, str(ROOT / "main.py"), "fit"]
        for config in self.configs:
            cmd += ["--config", config]
        # the configs name every output folder after trainer.default_root_dir
        cmd += self.overrides + ["--trainer.default_root_dir", str(run_dir)]
        last = run_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            cmd += ["--ckpt_path", str(last)]
        return cmd

    def finished(self, root: Path) -> bool:
        return (self.directory(root) / "eval.json").is_file()


#: Per target, the stage configs over the shared bases (a target's file composes over JNK3's and
#: holds only the difference).
STAGE_CONFIGS = {
    "jnk3": {"finetune": ["configs/kinase/jnk3_finetune.yaml"], "era": ["configs/kinase/jnk3_era.yaml"]},
    "gsk3b": {"finetune": ["configs/kinase/jnk3_finetune.yaml", "configs/kinase/gsk3b_finetune.yaml"],
              "era": ["configs/kinase/jnk3_era.yaml", "configs/kinase/gsk3b_era.yaml"]},
    DUAL: {"finetune": ["configs/kinase/jnk3_finetune.yaml", "configs/kinase/dual_finetune.yaml"],
           "era": ["configs/kinase/jnk3_era.yaml", "configs/kinase/dual_era.yaml"]},
}
#: ``run --mode online``: composed last over a target's alignment configs (fresh samples from the
#: current policy every few steps instead of one set from the reference).
ONLINE_CONFIG = "configs/kinase/jnk3_era_online.yaml"


def default_root(target: str) -> Path:
    """Where a target's runs live: ``runs/kinase`` for JNK3 (the first target), else
    ``runs/kinase_<target>`` — each root has its own prior and reference rows, scored on its target."""
    return ROOT / "runs" / ("kinase" if target == "jnk3" else f"kinase_{target}")


#: ERA's γ in the main β sweep (γ' = 0.9); runs at another γ carry ``_g<γ>`` in their names and
#: stay out of the sweep's trend tests and of the DPO comparison.
SWEEP_GAMMA = 9.0

#: The pair objectives ``run --objective`` sweeps: ERA (β, γ) and the DPO baseline (its own β).
OBJECTIVES = {"era": "lightning_modules.pair_losses.ERA", "dpo": "lightning_modules.pair_losses.DPO"}
#: The alignment stages a run can be: each objective offline (its name) or online (``<name>_online``).
STAGES = [*OBJECTIVES, *(f"{o}_online" for o in OBJECTIVES)]


def stage_label(stage: str) -> str:
    """How tables and plots name a stage ("ERA", "DPO online"); a row that is not a stage (the
    prior, the reference) keeps its own name."""
    return stage.replace("_", " ").upper().replace("ONLINE", "online") if stage in STAGES else stage


def plan(target: str, betas: list[float], seeds: list[int], gamma: float, root: Path, sets: Path,
         prior: str, objective: str = "era", online: bool = False, invalid_weight: float | None = None,
         transform: str | None = None) -> list[Run]:
    """The fine-tuning run, then ``objective`` (ERA, or the DPO baseline) for every (β, seed); the
    offline sample set is per seed and shared by every β and objective of that seed, so ERA and DPO
    train on the same pairs. ``online``: each run draws its own rounds from its current policy
    (``ONLINE_CONFIG``; stage and name ``<objective>_online``), with the same β, γ, steps, pairs
    per step, learning rate and invalid term. ``invalid_weight``: the (valid, invalid) term's weight
    instead of the config's; such runs are named and marked (``variant``) ``iw<w>`` and stay out
    of the main sweep's trend tests and matching. ``transform``: the record rewrite the prior was
    trained with (``fresh_ring_labels``), applied to the fine-tuning sets too."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")
    stage = f"{objective}_online" if online else objective
    pretrained = lambda path: json.dumps({"class_path": "networks.architectures.Pretrained",  # noqa: E731
                                          "init_args": {"path": str(path)}})
    finetuned = root / f"finetune_{target}" / "pretrained"
    base = {"finetune": ["configs/pretrain/molgpt_chembl_cpu.yaml"],
            "era": ["configs/era/base.yaml", f"configs/era/tasks/{target}.yaml"]}
    runs = [Run(f"finetune_{target}", "finetune", [*base["finetune"], *STAGE_CONFIGS[target]["finetune"]], [
        "--model.init_args.architecture", json.dumps({"class_path": "networks.architectures.Pretrained",
                                                      "init_args": {"path": str(prior), "dropout": 0.1}}),
        "--model.init_args.tokenizer", str(prior),
        "--data.init_args.train", str(sets / f"{target}_finetune_train.txt"),
        "--data.init_args.val", str(sets / f"{target}_finetune_heldout.txt"),
        *(["--data.init_args.transform", transform] if transform else [])])]
    for seed in seeds:
        for beta in betas:
            if objective == "era":
                loss = ["--model.init_args.objective.init_args.beta", f"{beta:g}",
                        "--model.init_args.objective.init_args.gamma", f"{gamma:g}"]
            else:  # a whole new objective: the base's ERA γ does not carry over
                loss = ["--model.init_args.objective",
                        json.dumps({"class_path": OBJECTIVES[objective], "init_args": {"beta": beta}})]
            other_gamma = f"_g{gamma:g}" if objective == "era" and gamma != SWEEP_GAMMA else ""
            variant = "" if invalid_weight is None else f"iw{invalid_weight:g}"
            weight = [] if invalid_weight is None else ["--model.init_args.invalid_weight", f"{invalid_weight:g}"]
            name = f"{stage}_{target}_b{beta:g}{other_gamma}{'_' + variant if variant else ''}_s{seed}"
            samples = [] if online else [  # the offline set shared by the seed's runs
                "--model.init_args.dataset_path", str(root / f"era_{target}_samples_s{seed}.parquet")]
            runs.append(Run(name, stage, [*base["era"], *STAGE_CONFIGS[target]["era"], *([ONLINE_CONFIG] if online else [])], [
                "--seed_everything", str(seed), "--model.init_args.seed", str(seed), *loss,
                "--model.init_args.policy", pretrained(finetuned),
                "--model.init_args.tokenizer", str(finetuned), *samples,
                "--model.init_args.novelty_reference", str(sets / f"{target}_finetune_train.txt"), *weight,
            ], beta=beta, gamma=gamma if objective == "era" else float("nan"), seed=seed, variant=variant))
    return runs


def evaluate_run(run: Run | None, name: str, model_dir: Path, reference_dir: Path, args, sets: Path) -> None:
    out = (args.root / name / "eval.json")
    if out.is_file():
        return
    target = args.target
    row = evaluate(model_dir, reference_dir, target, read_lines(sets / f"{target}_finetune_train.txt"),
                   read_lines(sets / f"{target}_known_actives.txt"), args.eval_samples,
                   args.top_k or None, args.eval_seed)
    summary = args.root / name / "summary.json"
    step = json.loads(summary.read_text())["step"] if summary.is_file() else None
    row = {"run": name, "stage": run.stage if run else name, "beta": run.beta if run else None,
           "gamma": run.gamma if run else None, "variant": run.variant if run else "",
           "seed": run.seed if run else None, "step": step, **row,
           "threads": args.threads, "weights_sha256": weights_digest(model_dir)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                               for k, v in row.items()}, indent=1) + "\n")
    print(json.dumps(row), flush=True)


def thread_env(threads: int) -> dict[str, str]:
    """The environment that gives a training subprocess ``threads`` CPU threads (torch reads
    ``OMP_NUM_THREADS`` when it starts)."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_all(args) -> None:
    sets = args.sets
    for t in (f"{args.target}_finetune_train.txt", f"{args.target}_known_actives.txt"):
        if not (sets / t).is_file():
            raise SystemExit(f"{sets / t} is missing: run `python benchmarks/kinase_era.py sets` first")
    runs = plan(args.target, args.betas, args.seeds, args.gamma, args.root, sets, args.prior, args.objective,
                args.mode == "online", args.invalid_weight, args.transform)
    import torch

    torch.set_num_threads(args.threads)  # float rounding, hence the runs themselves, depend on it
    env = {**os.environ, **thread_env(args.threads)}
    prior = Path(args.prior)
    finetuned = args.root / f"finetune_{args.target}" / "pretrained"
    if not args.dry_run:
        evaluate_run(None, "prior", prior, prior, args, sets)
    for run in runs:
        if run.finished(args.root):
            print(f"skip {run.name}: finished")
            continue
        cmd = run.command(args.root)
        print(shlex.join(cmd), flush=True)
        if args.dry_run:
            continue
        run.directory(args.root).mkdir(parents=True, exist_ok=True)
        with open(run.directory(args.root) / "train.log", "a") as log:
            done = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        if done.returncode:
            raise SystemExit(f"{run.name} failed (exit {done.returncode}); see {run.directory(args.root) / 'train.log'}")
        model_dir = run.directory(args.root) / "pretrained"
        evaluate_run(run, run.name, model_dir, prior if run.stage == "finetune" else finetuned, args, sets)
        if run.stage == "finetune":
            evaluate_run(None, "reference", finetuned, finetuned, args, sets)


def table(root: Path, csv: Path) -> pd.DataFrame:
    rows = [json.loads(p.read_text()) for p in sorted(root.glob("*/eval.json"))]
    if not rows:
        raise SystemExit(f"no */eval.json under {root}")
    frame = pd.DataFrame(rows)
    if "nearest_active_hist" in frame:  # a run evaluated before the histogram was kept: NaN
        unknown = [np.nan] * len(BIN_COLUMNS)
        counts = [h if isinstance(h, list) and len(h) == len(BIN_COLUMNS) else unknown for h in frame["nearest_active_hist"]]
        frame[CLOSE_ANALOGUES] = share_at_least(np.array(counts, dtype=float), 0.7)
    frame = with_variant(frame.reindex(columns=CSV_COLUMNS))
    # validity is a count over n_samples: rows written in float32 (1,800/2,000 as 0.89999998) exact again
    counted = frame["n_samples"].notna() & frame["validity"].notna()
    n = frame.loc[counted, "n_samples"].astype(float)
    frame.loc[counted, "validity"] = (frame.loc[counted, "validity"].astype(float) * n).round() / n
    order = {"prior": 0, "reference": 1, "finetune": 2, **{stage: 3 + k for k, stage in enumerate(STAGES)}}
    frame = frame.sort_values(["stage", "beta", "seed"], key=lambda c: c.map(order) if c.name == "stage" else c)
    frame = bar(frame)
    csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv, index=False, float_format="%.4g")
    return frame


def bar(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``BAR_COLUMNS`` set on its runs (stages in ``STAGES``), judged against its
    ``reference`` row: ``fold_vs_reference`` (the run's fraction above 0.5 over the reference's)
    and ``bar_met`` (every term of ``BAR``). Without a reference row, or with one lacking a
    metric the bar needs, both are NaN: a bar nobody can check is not met or missed."""
    frame = frame.assign(fold_vs_reference=np.nan, bar_met=pd.Series(pd.NA, index=frame.index, dtype="boolean"))
    reference = frame[frame.run == "reference"]
    needed = ["frac_above_0.5", "intdiv1"]
    if len(reference) != 1 or reference[needed].isna().any(axis=None):
        return frame
    ref = reference.iloc[0]
    runs = frame.stage.isin(STAGES)
    fraction = pd.to_numeric(frame.loc[runs, "frac_above_0.5"], errors="coerce")
    fold = fraction / ref["frac_above_0.5"] if ref["frac_above_0.5"] > 0 else fraction * np.inf
    met = ((fraction >= BAR["fold"] * ref["frac_above_0.5"])
           & (frame.loc[runs, "validity"] >= BAR["validity"])
           & (frame.loc[runs, "uniqueness"] >= BAR["uniqueness"])
           & ((frame.loc[runs, "intdiv1"] - ref["intdiv1"]).abs() <= BAR["intdiv1_within"]))
    known = frame.loc[runs, ["frac_above_0.5", "validity", "uniqueness", "intdiv1"]].notna().all(axis=1)
    frame.loc[runs, "fold_vs_reference"] = fold
    frame.loc[runs & known.reindex(frame.index, fill_value=False), "bar_met"] = met[known]
    return frame


#: Metrics summarised over seeds per β, and the direction a trend test asks about as β grows.
TRENDS = {"frac_above_0.5": "rises", "mean_score": "rises", "validity": "falls", "intdiv1": "falls",
          "kl_to_reference": "rises", "nearest_active_sim_median": "rises"}
#: Every metric ``across_seeds`` summarises: the trend-tested ones, then uniqueness and how close
#: the samples sit to the known actives (copying them, or new chemotypes).
SUMMARISED = [*TRENDS, CLOSE_ANALOGUES, "uniqueness", "novelty_vs_finetune", "novelty_vs_known_actives"]


def with_variant(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its ``variant`` column filled: a row without one (written before variants
    existed, or a frame without the column) belongs to its stage's main sweep, ""."""
    variant = frame["variant"] if "variant" in frame else pd.Series("", index=frame.index, dtype=object)
    return frame.assign(variant=variant.astype(object).fillna(""))


def across_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Per stage (``STAGES``: ERA, DPO, then each online), γ (ERA's; NaN for DPO) and β: seeds,
    and mean ± s.e. over seeds of each ``SUMMARISED`` metric (NaN where a frame lacks it)."""
    from seed_stats import mean_se

    rows = []
    runs = with_variant(frame[frame.stage.isin(STAGES)])
    runs = runs.assign(order=runs.stage.map(STAGES.index)).sort_values(["order", "gamma", "variant", "beta"])
    for (stage, gamma, variant, beta), group in runs.groupby(["stage", "gamma", "variant", "beta"], sort=False, dropna=False):
        row = {"objective": stage, "gamma": gamma, "variant": variant, "beta": beta, "seeds": int(group.seed.nunique())}
        for key in SUMMARISED:
            row[key], row[f"{key} se"] = mean_se(group[key]) if key in group else (np.nan, np.nan)
        if "bar_met" in group:  # a table's frame: how many seeds meet issue 28's bar
            row["bar_met_seeds"] = int(group["bar_met"].fillna(False).astype(bool).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def in_main_sweep(frame: pd.DataFrame) -> pd.Series:
    """Which rows belong to their stage's main sweep: no variant, and ERA's γ = ``SWEEP_GAMMA``
    (DPO has none)."""
    return (with_variant(frame).variant == "") & (frame.gamma.isna() | (frame.gamma == SWEEP_GAMMA))


def main_sweep(frame: pd.DataFrame, stage: str) -> pd.DataFrame:
    """The rows of ``stage``'s main sweep: γ = ``SWEEP_GAMMA`` and no ``variant``."""
    frame = with_variant(frame)
    return frame[(frame.stage == stage) & (frame.gamma == SWEEP_GAMMA) & (frame.variant == "")]


def trend_tests(frame: pd.DataFrame) -> pd.DataFrame:
    """Page's L test per ``TRENDS`` metric that it moves the stated way as β grows, each seed a
    block (``era_beta_curve.falls_with_beta``; only seeds that ran every β count; one-sided p),
    over ERA's main sweep (γ = ``SWEEP_GAMMA``), offline (stage ``era``) and online
    (``era_online``) apart. A stage without two complete seeds and three βs has no rows."""
    from era_beta_curve import falls_with_beta

    rows = []
    for stage in ("era", "era_online"):
        era = main_sweep(frame, stage).assign(beta_prime=lambda f: f.beta / (1 + f.gamma))
        for key, direction in TRENDS.items():
            if key not in era:  # a table from before the metric existed
                continue
            signed = era.assign(**{key: era[key] * (-1 if direction == "rises" else 1)})
            result = falls_with_beta(signed, key)
            if result is not None:
                rows.append({"stage": stage, "metric": key, "direction": direction,
                             **{k: v for k, v in result.items() if k != "key"}})
    return pd.DataFrame(rows, columns=["stage", "metric", "direction", "L", "pvalue", "seeds", "betas"])


#: Metrics the DPO baseline is compared on against ERA, at the same mean score or the same KL.
MATCHED = ["mean_score", "frac_above_0.5", "validity", "uniqueness", "intdiv1", "kl_to_reference",
           "nearest_active_sim_median", CLOSE_ANALOGUES]
#: What ``at_matched`` may hold equal: the mean score (= the mean energy, U = −p with invalid
#: samples at 0) or the distance from the reference.
MATCH_ON = ("mean_score", "kl_to_reference")


def _along_path(path: pd.DataFrame, on: str, target: float) -> pd.Series | None:
    """The metrics of ``path`` (rows in β order) interpolated linearly at the first segment whose
    ends bracket ``target`` in column ``on``; None when no segment does. Walking the β path, not
    sorting by ``on``, keeps a non-monotone curve (the score saturating, then falling at β 400)
    from joining βs that are not neighbours."""
    values = path[MATCHED].apply(pd.to_numeric, errors="coerce").reset_index(drop=True)
    for k in range(len(values) - 1):
        lo, hi = values.loc[k, on], values.loc[k + 1, on]
        if np.isfinite(lo) and np.isfinite(hi) and min(lo, hi) <= target <= max(lo, hi):
            t = 0.0 if hi == lo else (target - lo) / (hi - lo)
            return values.loc[k] + t * (values.loc[k + 1] - values.loc[k])
    return None


def era_path(frame: pd.DataFrame, seed_rows: pd.DataFrame) -> pd.DataFrame:
    """One seed's ERA path: the reference (row ``reference`` of ``frame``, as KL 0 and β 0: where
    every run starts), then that seed's ERA rows ``seed_rows`` in increasing β."""
    origin = frame[frame.run == "reference"].assign(kl_to_reference=0.0, beta=0.0)
    return pd.concat([origin, seed_rows.sort_values("beta")])


def at_matched(frame: pd.DataFrame, on: str = "mean_score", baseline: str = "dpo", against: str = "era") -> pd.DataFrame:
    """Each ``baseline`` run beside ERA at the same ``on`` (mean score, or KL to the reference) on
    its seed. ERA is the main sweep of stage ``against``: offline ERA, or ``era_online`` for an
    online baseline. ERA's path on that seed runs from the reference (row ``reference``, KL 0:
    where every run starts) through its βs in increasing order; its metrics are interpolated
    linearly on the first segment of that path that reaches the baseline's value, and are NaN when
    no segment does (no extrapolation). One row per baseline run (ordered by β, seed), with
    ``<metric>``, ``era <metric>`` (either stage's ERA) and ``diff <metric>`` (baseline − ERA) and
    ``path_points`` (the reference and ERA's βs found for the seed)."""
    if on not in MATCH_ON:
        raise ValueError(f"on must be one of {MATCH_ON}, got {on!r}")
    frame = frame.assign(**{key: np.nan for key in MATCHED if key not in frame})  # a table from before the metric
    era = main_sweep(frame, against)
    rows = []
    for _, run in frame[frame.stage == baseline].sort_values(["beta", "seed"]).iterrows():
        path = era_path(frame, era[era.seed == run.seed])
        mine = pd.to_numeric(run[MATCHED], errors="coerce")
        found = _along_path(path, on, mine[on]) if np.isfinite(mine[on]) else None
        row = {"matched_on": on, "run": run.run, "objective": baseline, "beta": run.beta, "seed": run.seed,
               "path_points": len(path)}
        for key in MATCHED:
            theirs = float(found[key]) if found is not None else float("nan")
            row.update({key: float(mine[key]), f"era {key}": theirs, f"diff {key}": float(mine[key]) - theirs})
        rows.append(row)
    return pd.DataFrame(rows)


def matched_summary(matched: pd.DataFrame) -> pd.DataFrame:
    """Per matching and baseline β: the seeds matched, and per metric the mean paired difference
    (baseline − ERA) ± s.e. with a two-sided paired t-test p (NaN under two pairs, for the
    matched quantity itself, and when the differences do not vary)."""
    from seed_stats import mean_se, paired

    rows = []
    for (on, beta), group in matched.groupby(["matched_on", "beta"], sort=True):
        row = {"matched_on": on, "beta": beta, "pairs": int(group["era validity"].notna().sum())}
        for key in MATCHED:
            diff = group[f"diff {key}"].dropna()
            row[f"diff {key}"], row[f"diff {key} se"] = mean_se(diff)
            row[f"diff {key} p"] = (paired(diff.to_numpy())["t_p"]
                                    if len(diff) > 1 and key != on and diff.std() > 0 else float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def plot_paths(frame: pd.DataFrame, path: Path, target: str = "jnk3") -> Path:
    """Two panels against KL to the reference: mean score and validity. ERA's β path per seed
    (from the reference, faint) and its mean over seeds per β (labelled), each DPO β's seeds and
    mean, and ERA at any other γ — how far each objective moves for what it gains."""
    from lightning_modules.plotting import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    reference = frame[frame.run == "reference"]
    runs = with_variant(frame[frame.stage.isin(STAGES)])
    groups = []  # per stage (in STAGES' order), γ (ERA's; NaN for DPO) and variant
    for stage in STAGES:
        name = stage_label(stage)
        for (g, v), rows in runs[runs.stage == stage].groupby(["gamma", "variant"], dropna=False):
            details = ([f"γ {g:g}"] if np.isfinite(g) else []) + ([v] if v else [])
            groups.append((f"{name} {', '.join(details)}".strip(), rows))
    for ax, key in zip(axes, ["mean_score", "validity"]):
        for k, (label, rows) in enumerate(groups):
            color = f"C{k}"
            if label.startswith("ERA"):
                for _, seed_rows in rows.groupby("seed"):
                    seed_path = era_path(frame, seed_rows)
                    ax.plot(seed_path.kl_to_reference, seed_path[key], color=color, alpha=0.25, lw=0.8)
            for beta, beta_rows in rows.groupby("beta"):
                x, y = beta_rows.kl_to_reference.astype(float), beta_rows[key].astype(float)
                ax.scatter(x, y, color=color, alpha=0.35, s=10)
                ax.errorbar(x.mean(), y.mean(), xerr=x.sem() if len(x) > 1 else 0, yerr=y.sem() if len(y) > 1 else 0,
                            color=color, marker="o" if label.startswith("ERA") else "s", ms=5, capsize=2)
                ax.annotate(f"β {beta:g}", (x.mean(), y.mean()), textcoords="offset points", xytext=(4, 4),
                            fontsize=7, color=color)
            per_beta = rows.groupby("beta").seed.nunique()
            seeds = f"{per_beta.min()}" if per_beta.min() == per_beta.max() else f"{per_beta.min()}–{per_beta.max()}"
            ax.plot([], [], color=color, marker="o" if label.startswith("ERA") else "s",
                    label=f"{label} ({seeds} seed{'' if seeds == '1' else 's'} per β)")
        if len(reference):
            ax.scatter([0.0], reference[key].astype(float), color="k", marker="*", s=60, label="reference", zorder=3)
        ax.set_xlabel("log π − log π_ref on the policy's samples (nats; top-k 5)")
        score = "mean (p(JNK3) + p(GSK3β)) / 2" if target == DUAL else f"mean p({target.upper()})"
        ax.set_ylabel({"mean_score": f"{score} (invalid = 0)", "validity": "validity"}[key])
    # one legend for both panels, where the validity panel has the fewest points
    axes[1].legend(*axes[0].get_legend_handles_labels(), loc="best", fontsize=7)
    name = "JNK3 + GSK3β" if target == DUAL else target.upper()
    fig.suptitle(f"{name}: ERA's β path and the baselines, 2,000 samples per model")
    return save_figure(fig, path)


TARGET_NAMES = {"jnk3": "JNK3", "gsk3b": "GSK3β", DUAL: "JNK3 + GSK3β"}
#: Bins of the nearest-active similarity histogram (``nearest``): 0–1 in steps of 0.05.
SIMILARITY_BINS = np.round(np.linspace(0.0, 1.0, 21), 2)
#: One histogram column per bin, named by its lower edge.
BIN_COLUMNS = [f"bin_{lo:.2f}" for lo in SIMILARITY_BINS[:-1]]
NEAREST_COLUMNS = ["target", "run", "stage", "beta", "gamma", "variant", "kl_to_reference", "weights_sha256",
                   "n_valid_distinct", "median", "q90", "eval_median", *BIN_COLUMNS]


def share_at_least(counts: np.ndarray, level: float) -> np.ndarray:
    """Per row of histogram ``counts`` (rows × ``BIN_COLUMNS``): the share of samples in the bins
    from ``level`` up (``level`` must be a bin edge); NaN for an empty or unknown row."""
    counts = np.asarray(counts, float)
    first = int(np.flatnonzero(np.isclose(SIMILARITY_BINS[:-1], level))[0])
    totals = counts.sum(axis=1)
    return counts[:, first:].sum(axis=1) / np.where(totals > 0, totals, np.nan)


def nearest_record(sims: np.ndarray) -> dict:
    """Distinct samples' nearest-active similarities (NaN: none) summarised: how many, median,
    90th percentile, and the counts over ``SIMILARITY_BINS`` (``BIN_COLUMNS``; the last bin includes 1)."""
    sims = np.asarray(sims, float)
    sims = sims[np.isfinite(sims)]
    counts, _ = np.histogram(sims, bins=SIMILARITY_BINS)
    return {"n_valid_distinct": len(sims), "median": float(np.median(sims)) if len(sims) else float("nan"),
            "q90": float(np.quantile(sims, 0.9)) if len(sims) else float("nan"),
            **dict(zip(BIN_COLUMNS, counts.astype(int).tolist()))}


def nearest_runs(root: Path) -> list[str]:
    """``nearest``'s default: every run under ``root`` with an ``eval.json``, the prior and the
    reference first, without the fine-tuning stage's row (the reference's own model, measured
    against the prior: the reference's distribution a second time)."""
    names = sorted(p.parent.name for p in root.glob("*/eval.json")
                   if json.loads(p.read_text()).get("stage") != "finetune")
    return sorted(names, key=lambda name: {"prior": 0, "reference": 1}.get(name, 2))


def nearest_distribution(root: Path, runs: list[str], target: str, sets: Path, n: int, top_k: int | None,
                         seed: int) -> pd.DataFrame:
    """For each run under ``root`` (its ``eval.json`` names the model it measured): the whole
    distribution, not just the median, of its distinct valid evaluation samples' Tanimoto
    similarity to the nearest known active — is alignment finding new chemotypes or copying
    actives? An ``eval.json`` that keeps the histogram (``nearest_active_hist``, written by
    ``evaluate`` since it does) of the same ``n`` and top-k is read; otherwise the samples are drawn
    (``evaluation_draw``: ``n``, top-k, ``seed``), and a median other than the ``eval.json``'s
    (``eval_median``) is warned about: on the thread count and settings of the evaluation the
    draw is the same. One row per run, with its stage, β and KL to the reference from the
    ``eval.json``: histogram counts over ``SIMILARITY_BINS``."""
    from oracles.canonical import canonical_smiles

    actives = read_lines(sets / f"{target}_known_actives.txt")
    rows = []
    for name in runs:
        record = root / name / "eval.json"
        if not record.is_file():
            raise SystemExit(f"nearest: {record} does not exist (run it first: kinase_era.py run)")
        info = json.loads(record.read_text())
        same_draw = info.get("n_samples", n) == n and (info.get("top_k", top_k) or 0) == (top_k or 0)
        if info.get("nearest_active_hist") is not None and same_draw:
            counts = [int(c) for c in info["nearest_active_hist"]]
            if len(counts) != len(BIN_COLUMNS):
                raise SystemExit(f"nearest: {record}'s nearest_active_hist has {len(counts)} bins, not {len(BIN_COLUMNS)}")
            near = {"n_valid_distinct": sum(counts), "median": info.get("nearest_active_sim_median"),
                    "q90": info.get("nearest_active_sim_q90"), **dict(zip(BIN_COLUMNS, counts))}
        else:
            model_dir = Path(info["model"])
            if not model_dir.is_absolute():
                model_dir = ROOT / model_dir
            if info.get("weights_sha256") and weights_digest(model_dir) != info["weights_sha256"]:
                raise SystemExit(f"nearest: {model_dir} is not the model {record} measured (weights changed since)")
            batch = evaluation_draw(model_dir, n, top_k, seed)
            valid = [c for c in (canonical_smiles(t) for t in batch.texts) if c is not None]
            near = nearest_record(nearest_similarity(list(dict.fromkeys(valid)), actives))
            measured = info.get("nearest_active_sim_median")
            if same_draw and measured is not None and not np.isclose(near["median"], measured, rtol=0, atol=1e-9):
                print(f"nearest: warning: {name}'s median {near['median']:.4f} is not its eval.json's {measured:.4f} "
                      "(another thread count draws other samples)", file=sys.stderr, flush=True)
        rows.append({"target": target, "run": name, "stage": info.get("stage", name), "beta": info.get("beta"),
                     "gamma": info.get("gamma"), "variant": info.get("variant") or "",
                     "kl_to_reference": info.get("kl_to_reference"), "weights_sha256": info.get("weights_sha256"),
                     "eval_median": info.get("nearest_active_sim_median"), **near})
        print(f"{target} {name}: median {rows[-1]['median']} (eval.json {rows[-1]['eval_median']})", flush=True)
    return pd.DataFrame(rows, columns=NEAREST_COLUMNS)


def pool_nearest(frame: pd.DataFrame) -> pd.DataFrame:
    """``nearest``'s rows pooled over seeds: per target and run name without its ``_s<seed>``
    (the reference stays itself), its stage, β, γ and variant, the seeds, the summed histogram, and mean ± s.e.
    over seeds of the KL to the reference, the median and the shares of samples at similarity
    ≥ 0.7 and ≥ 0.95 (the last bin)."""
    from seed_stats import mean_se

    frame = with_variant(frame).assign(objective=frame.run.str.replace(r"_s\d+$", "", regex=True))
    rows = []
    for (target, objective), group in frame.groupby(["target", "objective"], sort=False):
        counts = group[BIN_COLUMNS].to_numpy(float)
        first = group.iloc[0]
        row = {"target": target, "objective": objective, "stage": first.stage, "beta": first.beta,
               "gamma": first.gamma, "variant": first.variant, "seeds": len(group)}
        row["kl_to_reference"], row["kl_to_reference se"] = mean_se(pd.to_numeric(group["kl_to_reference"]))
        row["median"], row["median se"] = mean_se(group["median"])
        for level in (0.7, 0.95):
            share = share_at_least(counts, level)
            row[f"share >= {level:g}"], row[f"share >= {level:g} se"] = mean_se(pd.Series(share))
        rows.append({**row, **dict(zip(BIN_COLUMNS, counts.sum(axis=0).astype(int)))})
    return pd.DataFrame(rows)


def plot_nearest(frame: pd.DataFrame, path: Path) -> Path:
    """One column per target. Top: the reference's distribution of nearest-active similarity (black)
    and, per stage, that of its β furthest from the reference (largest KL; seeds pooled: fraction
    of their distinct valid samples per bin). Bottom: per stage, the share of samples at
    similarity ≥ 0.7 against the KL to the reference, a point per β (mean ± s.e. over seeds):
    does pushing further from the reference bring the samples closer to known actives?"""
    from lightning_modules.plotting import pyplot, save_figure

    plt = pyplot()
    pooled = pool_nearest(frame)
    pooled = pooled[in_main_sweep(pooled)]  # the prior and reference too: no γ, no variant
    targets = list(dict.fromkeys(pooled.target))
    fig, axes = plt.subplots(2, len(targets), figsize=(4.8 * len(targets), 7.6), squeeze=False)
    centres = SIMILARITY_BINS[:-1] + 0.025
    stages = [stage for stage in STAGES if stage in set(pooled.stage)]
    colors = {stage: f"C{k}" for k, stage in enumerate(STAGES)}
    for column, target in enumerate(targets):
        mine = pooled[pooled.target == target]
        top, bottom = axes[0, column], axes[1, column]
        reference = mine[mine.objective == "reference"]
        furthest = [group.loc[group.kl_to_reference.idxmax()] for stage in stages
                    if len(group := mine[(mine.stage == stage) & mine.kl_to_reference.notna()])]
        for row in [*(r for _, r in reference.iterrows()), *furthest]:
            counts = row[BIN_COLUMNS].to_numpy(float)
            share = counts / counts.sum() if counts.sum() else counts
            is_reference = row.objective == "reference"
            label = ("reference" if is_reference else f"{stage_label(row.stage)} β {row.beta:g} "
                     f"(KL {row.kl_to_reference:.1f})") + f", median {row['median']:.2f}"
            top.step(centres, share, where="mid", color="k" if is_reference else colors[row.stage],
                     lw=2 if is_reference else 1.2, label=label)
        top.set_xlabel("Tanimoto similarity to the nearest known active")
        top.set_ylabel("fraction of distinct valid samples")
        top.set_title(TARGET_NAMES.get(target, target))
        if top.get_legend_handles_labels()[0]:
            top.legend(fontsize=6, loc="upper right")
        for stage in stages:
            path_rows = mine[mine.stage == stage].sort_values("kl_to_reference")
            bottom.errorbar(path_rows.kl_to_reference, path_rows["share >= 0.7"], xerr=path_rows["kl_to_reference se"],
                            yerr=path_rows["share >= 0.7 se"], marker="o", ms=3, lw=1, capsize=2,
                            color=colors[stage], label=stage_label(stage))
        for _, row in reference.iterrows():
            bottom.scatter([0.0], [row["share >= 0.7"]], color="k", zorder=3, label="reference")
        bottom.set_xlabel("KL to the reference (nats)")
        bottom.set_ylabel("share of samples at similarity ≥ 0.7")
        if bottom.get_legend_handles_labels()[0]:
            bottom.legend(fontsize=6)
    fig.suptitle("Nearest known active: copies would sit near 1")
    return save_figure(fig, path)


def targets_summary(tables: dict[str, Path]) -> pd.DataFrame:
    """Every target's results on one page: per target (a ``table`` CSV each), its prior row
    (before fine-tuning, when the table has one) and its reference row (after), then per main-sweep group (stage, β; γ = ``SWEEP_GAMMA`` for ERA, no variant) the seeds, mean
    ± s.e. of ``SUMMARISED``' metrics, the fold over the reference's fraction above 0.5, and how many
    seeds meet issue 28's bar (``BAR``, recomputed from the CSV so that a CSV written before the
    bar columns existed counts the same)."""
    parts = []
    for target, path in tables.items():
        if not Path(path).is_file():
            raise SystemExit(f"summary: no table CSV {path} (write it with: kinase_era.py table --target {target})")
        frame = bar(pd.read_csv(path))
        reference = frame[frame.run == "reference"]
        if len(reference) != 1:
            raise SystemExit(f"summary: {path} has {len(reference)} reference rows, not 1")
        ref = reference.iloc[0]
        # before fine-tuning (the prior, when the table has it) and after (the reference)
        rows = [{"target": target, "objective": row.run, "seeds": 1,
                 **{key: row.get(key, np.nan) for key in SUMMARISED},
                 "fold_vs_reference": row["frac_above_0.5"] / ref["frac_above_0.5"]}
                for _, row in frame[frame.run.isin(["prior", "reference"])].iterrows()]
        groups = across_seeds(frame)
        for _, group in groups[in_main_sweep(groups)].iterrows():
            rows.append({"target": target, **group.drop(["variant"]).to_dict(),
                         "fold_vs_reference": group["frac_above_0.5"] / ref["frac_above_0.5"]})
        parts.append(pd.DataFrame(rows))
    return pd.concat(parts, ignore_index=True)


def summary_markdown(frame: pd.DataFrame) -> str:
    """``targets_summary``'s rows as a Markdown table: mean ± s.e., the fold and the seeds meeting the bar."""
    def pm(row, key, digits=3):
        se = row.get(f"{key} se")
        return f"{row[key]:.{digits}f}" + (f" ± {se:.{digits}f}" if pd.notna(se) else "")

    lines = ["| target | run | β | seeds | fraction > 0.5 | fold | validity | uniqueness | IntDiv1 | "
             "nearest active (median Tanimoto) | KL | bar met |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, row in frame.iterrows():
        name = stage_label(row.objective)
        beta = "" if pd.isna(row.get("beta")) else f"{row.beta:g}"
        met = "" if row.objective in ("prior", "reference") else f"{int(row.bar_met_seeds)} of {int(row.seeds)}"
        lines.append(f"| {TARGET_NAMES.get(row.target, row.target)} | {name} | {beta} | {int(row.seeds)} | "
                     f"{pm(row, 'frac_above_0.5')} | {row.fold_vs_reference:.2f}× | {pm(row, 'validity')} | "
                     f"{row.uniqueness:.3f} | {pm(row, 'intdiv1')} | {pm(row, 'nearest_active_sim_median')} | "
                     f"{'' if row.objective == 'prior' else pm(row, 'kl_to_reference', 2)} | {met} |")
    return "\n".join(lines)


def plot_summary(frame: pd.DataFrame, path: Path) -> Path:
    """One column per target, against KL to the reference: the fraction above 0.5 (top) and
    validity (bottom) of each objective's β path (mean ± s.e. over seeds), the reference (star)
    and the bar's lines (twice the reference's fraction; validity 0.90). A filled marker meets the
    bar on every seed, a hollow one on fewer."""
    from lightning_modules.plotting import pyplot, save_figure

    plt = pyplot()
    targets = list(dict.fromkeys(frame.target))
    fig, axes = plt.subplots(2, len(targets), figsize=(4.2 * len(targets), 7), squeeze=False)
    for col, target in enumerate(targets):
        rows = frame[frame.target == target]
        ref = rows[rows.objective == "reference"].iloc[0]
        for ax, key, line in zip(axes[:, col], ["frac_above_0.5", "validity"],
                                 [BAR["fold"] * ref["frac_above_0.5"], BAR["validity"]]):
            for k, stage in enumerate(STAGES):
                # away from the reference: ERA as β grows, DPO as its β shrinks
                path_rows = rows[rows.objective == stage].sort_values("beta", ascending=not stage.startswith("dpo"))
                if path_rows.empty:
                    continue
                color, marker = f"C{k}", "o" if stage.startswith("era") else "s"
                x, y = path_rows.kl_to_reference.astype(float), path_rows[key].astype(float)
                ax.plot(np.r_[0.0, x], np.r_[ref[key], y], color=color, lw=1, alpha=0.6,
                        ls="-" if stage.endswith("online") else "--")
                for _, r in path_rows.iterrows():
                    every = r.bar_met_seeds == r.seeds
                    ax.errorbar(r.kl_to_reference, r[key], xerr=r["kl_to_reference se"], yerr=r[f"{key} se"],
                                color=color, marker=marker, ms=6, capsize=2, mfc=color if every else "white")
                    ax.annotate(f"{r.beta:g}", (r.kl_to_reference, r[key]), textcoords="offset points",
                                xytext=(4, 3), fontsize=7, color=color)
                ax.plot([], [], color=color, marker=marker, ls="-" if stage.endswith("online") else "--",
                        label=stage_label(stage))
            ax.scatter([0.0], [ref[key]], color="k", marker="*", s=80, zorder=3, label="reference")
            ax.axhline(line, color="0.5", ls=":", lw=1, label="bar")
            ax.set_xlabel("KL to the reference (nats; log π − log π_ref, top-k 5)")
            ax.set_ylabel({"frac_above_0.5": "fraction of samples above 0.5", "validity": "validity"}[key])
        axes[0, col].set_title(TARGET_NAMES.get(target, target))
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle("β paths from the fine-tuned reference (mean ± s.e. over seeds; filled: bar met on every seed)")
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_sets = sub.add_parser("sets", help="score ChEMBL (and ExCAPE) and write the fine-tuning sets")
    p_sets.add_argument("--out", type=Path, default=ROOT / "runs" / "kinase")
    p_sets.add_argument("--excape", type=Path, default=None, help="Jin et al.'s data/ directory (jnk3/all.txt, gsk3/all.txt)")
    p_sets.add_argument("--held-out", type=float, default=0.1)
    p_sets.add_argument("--seed", type=int, default=0)
    p_run = sub.add_parser("run", help="fine-tune, then ERA (or DPO) per (β, seed); finished runs are skipped")
    p_run.add_argument("--target", choices=list(STAGE_CONFIGS), default="jnk3")
    p_run.add_argument("--root", type=Path, default=None, help="default: runs/kinase (jnk3), runs/kinase_<target>")
    p_run.add_argument("--sets", type=Path, default=ROOT / "runs" / "kinase")
    p_run.add_argument("--prior", default=str(ROOT / "checkpoints" / "molgpt-chembl"))
    p_run.add_argument("--objective", choices=sorted(OBJECTIVES), default="era",
                       help="era, or dpo: the DPO baseline on the same pairs (--betas are then DPO's β)")
    p_run.add_argument("--betas", type=float, nargs="+", default=None,
                       help="ERA's βs (default 50 100 200 400); DPO's βs (required with --objective dpo)")
    p_run.add_argument("--mode", choices=["offline", "online"], default="offline",
                       help="online: fresh samples from the current policy every 10 steps (runs <objective>_online_*)")
    p_run.add_argument("--invalid-weight", type=float, default=None,
                       help="the (valid, invalid) term's weight instead of the config's 1 (runs named _iw<w>)")
    p_run.add_argument("--gamma", type=float, default=SWEEP_GAMMA,
                       help="ERA's γ (default 9, the main sweep; another γ is named _g<γ>)")
    p_run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p_run.add_argument("--transform", default=None,
                       help="rewrite the fine-tuning SMILES as the prior's training data was "
                            "(fresh_ring_labels: a prior trained with configs/pretrain/molgpt_chembl_cpu_fresh_rings.yaml)")
    p_run.add_argument("--eval-samples", type=int, default=2000)
    p_run.add_argument("--eval-seed", type=int, default=100)
    p_run.add_argument("--top-k", type=int, default=5, help="evaluation top-k (0: none)")
    p_run.add_argument("--threads", type=int, default=1,
                       help="CPU threads of each run and of the evaluation (default 1, as every measured run): "
                            "the float rounding, so the runs themselves, depend on it; run several runners side "
                            "by side to use more cores")
    p_run.add_argument("--dry-run", action="store_true", help="print the commands of unfinished runs")
    p_table = sub.add_parser("table", help="collect */eval.json into the CSV")
    p_table.add_argument("--target", choices=list(STAGE_CONFIGS), default="jnk3")
    p_table.add_argument("--root", type=Path, default=None, help="default: as for run")
    p_table.add_argument("--csv", type=Path, default=None,
                         help="default: <root>/kinase_<target>.csv (committed results: e.g. docs/results/kinase_jnk3_v3prior.csv)")
    p_table.add_argument("--plot", type=Path, default=None,
                         help="also draw score and validity against KL (PNG), e.g. docs/img/kinase_jnk3_kl.png")
    p_summary = sub.add_parser("summary", help="every target's table CSV on one page: the bar per β, a table and a plot")
    p_summary.add_argument("--table", nargs="+", required=True, metavar="TARGET=CSV",
                           help="e.g. jnk3=docs/results/kinase_jnk3_v3prior.csv gsk3b=... dual=...")
    p_summary.add_argument("--csv", type=Path, required=True, help="the summary CSV to write")
    p_summary.add_argument("--plot", type=Path, default=None, help="also draw every target's β paths (PNG)")
    p_near = sub.add_parser("nearest", help="each run's whole distribution of similarity to the nearest known active")
    p_near.add_argument("--target", choices=list(STAGE_CONFIGS), default="jnk3")
    p_near.add_argument("--root", type=Path, default=None, help="default: as for run")
    p_near.add_argument("--sets", type=Path, default=ROOT / "runs" / "kinase")
    p_near.add_argument("--runs", nargs="+", default=None,
                        help="run names under --root, e.g. reference era_online_jnk3_b50_s0 (default: every run with an eval.json)")
    p_near.add_argument("--csv", type=Path, required=True,
                        help="rows of the same target and run are replaced, all others kept (one file for every target and seed)")
    p_near.add_argument("--plot", type=Path, default=None)
    p_near.add_argument("--eval-samples", type=int, default=2000)
    p_near.add_argument("--eval-seed", type=int, default=100)
    p_near.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args(argv)
    if args.command == "nearest":
        root = args.root or default_root(args.target)
        frame = nearest_distribution(root, args.runs or nearest_runs(root), args.target, args.sets, args.eval_samples,
                                     args.top_k or None, args.eval_seed)
        if args.csv.is_file():
            kept = pd.read_csv(args.csv)
            if list(kept.columns) != NEAREST_COLUMNS:
                raise SystemExit(f"nearest: {args.csv} has other columns; not appending to it")
            mine = kept.target.eq(args.target) & kept.run.isin(frame.run)
            frame = pd.concat([kept[~mine], frame], ignore_index=True)
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.csv, index=False, float_format="%.4g")
        pooled = pool_nearest(frame)
        pooled.to_csv(args.csv.with_name(args.csv.stem + "_pooled.csv"), index=False, float_format="%.4g")
        print(pooled.drop(columns=[c for c in pooled if c.startswith("bin_")]).to_string(index=False))
        if args.plot:
            print("plot:", plot_nearest(frame, args.plot))
        return
    if args.command == "summary":
        tables = {}
        for item in args.table:
            target, sep, csv = item.partition("=")
            if not sep or target not in STAGE_CONFIGS or not csv:
                parser.error(f"--table takes TARGET=CSV with TARGET one of {list(STAGE_CONFIGS)}, got {item!r}")
            tables[target] = Path(csv)
        if args.csv.resolve() in {p.resolve() for p in tables.values()}:
            parser.error(f"--csv {args.csv} is one of the input tables: it would be overwritten")
        frame = targets_summary(tables)
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.csv, index=False, float_format="%.4g")
        print(summary_markdown(frame))
        if args.plot:
            print("plot:", plot_summary(frame, args.plot))
        return
    if args.command == "run" and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.command == "run" and args.betas is None:
        if args.objective != "era":
            parser.error(f"--objective {args.objective} needs --betas (its own β, e.g. 0.1 1 5): ERA's βs do not apply")
        args.betas = [50.0, 100.0, 200.0, 400.0]
    if args.command in ("run", "table") and args.root is None:
        args.root = default_root(args.target)
    if args.command == "table" and args.csv is None:
        # beside the runs it collects: never over a committed results file unless asked (--csv)
        args.csv = args.root / f"kinase_{args.target}.csv"
    if args.command == "sets":
        print(json.dumps(make_sets(args.out, args.excape, args.held_out, args.seed), indent=1))
    elif args.command == "run":
        run_all(args)
    else:
        frame = table(args.root, args.csv)
        print(frame.to_string(index=False))
        summary, trends = across_seeds(frame), trend_tests(frame)
        summary.to_csv(args.csv.with_name(args.csv.stem + "_by_beta.csv"), index=False, float_format="%.4g")
        trends.to_csv(args.csv.with_name(args.csv.stem + "_trend.csv"), index=False, float_format="%.4g")
        print(summary.to_string(index=False))
        print(trends.to_string(index=False) if len(trends) else "trend tests: none (each needs 2 seeds that ran every β, and 3 βs)")
        # each baseline against offline ERA's path, and online DPO also against online ERA's:
        # <stem>_<baseline>[_vs_<path>]_matched.csv
        for baseline, against in [(b, "era") for b in STAGES[1:]] + [("dpo_online", "era_online")]:
            matched = pd.concat([at_matched(frame, on, baseline, against) for on in MATCH_ON], ignore_index=True)
            if len(matched) and len(main_sweep(frame, against)):  # no path to match against: no file
                suffix = "" if against == "era" else f"_vs_{against}"
                matched.to_csv(args.csv.with_name(f"{args.csv.stem}_{baseline}{suffix}_matched.csv"), index=False,
                               float_format="%.4g")
                print(f"{baseline} − {against}, matched:")
                print(matched_summary(matched).T.to_string())
        if args.plot:
            print("plot:", plot_paths(frame, args.plot, args.target))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
