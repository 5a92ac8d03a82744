"""Offline and online alignment (ERA or DPO) of a causal LM against an oracle.

- :class:`AlignmentBase`: what both share — the policy and its frozen reference, the oracle, the
  pair objective (plus the optional term for invalid samples), scoring, the evaluation each
  validation runs and logs, and the RNG state in checkpoints.
- :class:`OfflineAlignment`: trains on pairs of one fixed sample set: the reference's own samples,
  made once and stored by :class:`~datamodules.reference_samples.ReferenceSamples` in
  ``prepare_data``, or a user's file (:class:`~datamodules.scored_pairs.ScoredPairsDataModule`). The pair order is a function of
  (seed, epoch) and the position in the epoch is checkpointed, so a resumed run trains on exactly
  the pairs an uninterrupted one would (``tests/test_resume.py``).
- :class:`OnlineAlignment`: every ``resample_every`` steps, trains on pairs of a fresh round of
  samples from the current policy.

The histograms, the before/after table and ``summary.json`` come from the callback
:class:`callbacks.alignment_report.AlignmentReport` (``main.py`` adds it to every alignment run).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from lightning_modules.alongside import alongside
from lightning_modules.frozen import end_expect_frozen, expect_frozen, frozen_copy
from lightning_modules.invalid_term import InvalidTerm
from lightning_modules.metrics import Novelty, sample_quality
from lightning_modules.pair_losses import ERA, PairObjective, WithSFT
from datamodules.pairs import make_pairs
from datamodules.reference_samples import ReferenceSamples, describe
from datamodules.scored_pairs import ScoredPairsDataModule, sampling_validation_loader
from lightning_modules.resumable_batches import ResumableBatches, ShuffledPairBatches, trainer_progress
from lightning_modules.rng import restore_rng, rng_state
from networks.architectures import Architecture, Pretrained, disable_dropout
from networks.sampling import bucketed_logprob, sample, scoring_logprob, sequence_logprob
from networks.tokenizers import load_tokenizer
from oracles.base import Oracle, invalid_preferred

log = logging.getLogger(__name__)
T = TypeVar("T")


class NonFiniteEnergyError(ValueError):
    pass


def _summary(prefix: str, values: np.ndarray) -> dict[str, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {}
    q = np.quantile(values, [0.1, 0.5, 0.9])
    return {f"{prefix}/mean": float(values.mean()), f"{prefix}/median": float(q[1]),
            f"{prefix}/q10": float(q[0]), f"{prefix}/q90": float(q[2]), f"{prefix}/std": float(values.std())}


def valid_mean(energies: np.ndarray, valid: np.ndarray) -> float:
    """Mean energy of the valid samples. With ``invalid_term`` the objective's β acts among
    valid samples only (validity has a term of its own), so this is the energy a β sweep moves;
    ``energy/mean`` also carries the invalid penalty times the invalid share."""
    valid = np.asarray(valid, bool)
    return float(energies[valid].mean()) if valid.any() else float("nan")


@dataclass
class Evaluation:
    """One scored sample set: its summary numbers and the per-sample arrays behind them.

    Args:
        stats: the logged numbers (energy and property summaries, validity, KL, ...); empty for a
            stored sample set.
        energies: every sample's energy.
        valid: every sample's validity.
        quality: validity, uniqueness, IntDiv1 and novelty (``sample_quality``).
        values: each property's values (the energies when the oracle reports none).
    """

    stats: dict[str, float]
    energies: np.ndarray
    valid: np.ndarray
    quality: dict[str, float]
    values: dict[str, np.ndarray]


class AlignmentBase(L.LightningModule):
    """What offline and online alignment share: a pretrained causal LM trained with a pair
    objective against an oracle, next to a frozen copy of itself (the reference).

    Args:
        oracle: energies of samples (lower is better), e.g. ``configs/oracles/qed.yaml``.
        policy: the starting network, normally ``Pretrained(path)``; the reference is a frozen copy.
        tokenizer: the network's tokenizer (a checkpoint directory or named tokenizer).
        objective: the pair loss (``ERA(beta, gamma)`` or ``DPO(beta)``).
        num_samples: samples drawn and scored for the training pairs (offline: once; online: per round).
        max_pairs: pairs drawn (distinct, seeded) from those samples; ``None`` = all.
        pairs_per_batch: pairs per optimisation step.
        top_k / temperature / max_new_tokens: sampling settings (the ERA paper: top-k 5, T = 1).
        val_samples: policy samples drawn at each validation.
        lr: Adam learning rate.
        sft_weight: weight of an NLL term on the lower-energy member of each pair; the same as
            ``objective: pair_losses.WithSFT(objective, weight)``.
        invalid_term: a term of their own for invalid samples, which then leave the objective's
            pairs (:class:`~lightning_modules.invalid_term.InvalidTerm`: DPO on ``pairs_per_batch``
            random (valid, invalid) pairs each step); None: none.
        invalid_weight / invalid_beta: shorthand for ``invalid_term: InvalidTerm(weight, beta)``
            when ``invalid_weight`` > 0.
        seed: seed of the samples, the pairs and the evaluations.
        domain: ``smiles``/``dna``/``protein`` for validity and uniqueness.
        plot_dir: where ``AlignmentReport`` writes histograms and ``summary.json`` (default: the
            trainer's log directory).
        novelty_reference: the molecules the reference was trained on, for ``samples/novelty`` (the
            share of distinct valid samples not among them): ``moses`` (MOSES train, compared as
            given, as MOSES does), or a file of sequences (one per line, or the first column of a
            .csv/.tsv; .gz allowed), canonicalised here. Read once per run; None: not logged.
    """

    #: DataModules this module can train from (none: it makes its own data)
    accepted_datamodules: tuple[type, ...] = ()

    def __init__(self, oracle: Oracle, policy: Architecture | dict | None = None,
                 tokenizer: str = "smiles", objective: PairObjective | None = None,
                 num_samples: int = 2000, max_pairs: int | None = 20000, pairs_per_batch: int = 64,
                 top_k: int | None = 5, temperature: float = 1.0, max_new_tokens: int = 100,
                 val_samples: int = 500, lr: float = 1e-6, sft_weight: float = 0.0,
                 invalid_term: InvalidTerm | None = None, invalid_weight: float = 0.0,
                 invalid_beta: float = 0.5, seed: int = 0, domain: str = "smiles",
                 plot_dir: str | None = None, novelty_reference: str | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["oracle", "policy", "objective", "invalid_term"])
        architecture = Architecture.from_config(policy or Pretrained("molgpt-moses"))
        self.hparams["policy"] = architecture.to_config()
        self.tokenizer = load_tokenizer(tokenizer)
        self.model = disable_dropout(architecture.build(self.tokenizer))
        self.reference = frozen_copy(self.model)
        self.oracle = oracle
        self.objective = objective or ERA()
        if sft_weight:  # the old argument: the same as objective WithSFT(objective, sft_weight)
            self.objective = WithSFT(self.objective, sft_weight)
        if invalid_term is not None and invalid_weight:
            raise ValueError("give invalid_term or its shorthand invalid_weight/invalid_beta, not both")
        #: the invalid samples' own term, or None (they are then paired like the valid ones)
        self.invalid_term = invalid_term or (InvalidTerm(invalid_weight, invalid_beta) if invalid_weight else None)
        #: each validation's numbers, in order
        self.history: list[dict[str, float]] = []
        #: the last ``evaluate_policy`` (a validation's, normally)
        self.last_evaluation: Evaluation | None = None
        self._novelty_hashes: set[int] | None = None
        self._warned_penalty = False

    # ------------------------------------------------------------------ scoring
    def _score(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        scores = self.oracle(texts)
        energies = scores.energies.double().numpy()
        if energies.ndim != 1:
            raise ValueError(f"oracle {self.oracle.name!r} returns {energies.ndim}-d energies; "
                             "offline alignment needs one energy per sample (use WeightedSum)")
        if not np.isfinite(energies).all():
            raise NonFiniteEnergyError(
                f"oracle {self.oracle.name!r} returned {int((~np.isfinite(energies)).sum())} non-finite "
                "energies; give it a finite penalty for invalid samples")
        valid = scores.valid.numpy()
        self._warn_if_invalid_preferred(energies, valid)
        return energies, valid, scores.values

    def _score_alongside(self, texts: list[str], work: Callable[[], T]) -> tuple[tuple, T]:
        """``self._score(texts)`` in a background thread while ``work()`` (the network) runs in this
        one; both results, the same as if run one after the other (:func:`alongside`)."""
        return alongside(self.device, lambda: self._score(texts), work)

    def _warn_if_invalid_preferred(self, energies: np.ndarray, valid: np.ndarray) -> None:
        """Warn once per run when the oracle's penalty favours invalid samples (``invalid_preferred``)."""
        if not self._warned_penalty:
            for message in invalid_preferred(energies, valid, [self.oracle.name]):
                self._warned_penalty = True
                log.warning(message)

    def _scored_pairs(self) -> ScoredPairsDataModule | None:
        """The attached DataModule if this module accepts it (``accepted_datamodules``), else None.
        Any other DataModule is an error: Lightning would take its batches for pairs (or for online
        steps) and fail far from here."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and not isinstance(datamodule, self.accepted_datamodules):
            hint = (f"it trains from {', '.join(c.__name__ for c in self.accepted_datamodules)} or from its own samples"
                    if self.accepted_datamodules else "it draws its own samples; remove the data section")
            raise TypeError(f"{type(self).__name__} cannot train from {type(datamodule).__name__}: {hint}")
        return datamodule

    def _run_device(self) -> torch.device:
        """The trainer's device. Lightning calls prepare_data and setup before it moves the module
        there, so work done in them on ``self.device`` (a GPU run's whole offline set) would run on
        the CPU."""
        return self._trainer.strategy.root_device if self._trainer is not None else self.device

    def _pairs_and_invalid(self, sequences: list[str], valid: np.ndarray, seed: int):
        """Pairs over the samples — over the valid ones only when invalid samples have a term of
        their own (``invalid_term``) — and the rows of the valid and invalid samples."""
        good, bad = torch.from_numpy(np.flatnonzero(valid)), torch.from_numpy(np.flatnonzero(~valid))
        if self.invalid_term is None:
            i, j = make_pairs(sequences, self.hparams.max_pairs, seed)
            return i, j, good, bad
        keep = self.invalid_term.pairable(valid)
        i, j = make_pairs([sequences[k] for k in keep], self.hparams.max_pairs, seed)
        return keep[i], keep[j], good, bad

    # ------------------------------------------------------------------ training
    def step_generator(self, batch_idx: int, stream: int = 0) -> torch.Generator:
        """A generator seeded by the position (seed, rank, epoch, batch; ``stream`` tells apart
        draws of one step), not the global RNG: a resumed run draws what the uninterrupted one
        drew, whatever else (validation, callbacks) consumed random numbers in between."""
        key = [self.hparams.seed, self.global_rank, self.current_epoch, batch_idx] + ([stream] if stream else [])
        seed = np.random.SeedSequence(key)
        return torch.Generator().manual_seed(int(seed.generate_state(1, np.uint64)[0] >> 1))

    def invalid_loss(self, ids, mask, ref_logps, good, bad, batch_idx: int) -> torch.Tensor:
        """``invalid_term`` on ``pairs_per_batch`` random (valid, invalid) pairs of stored rows,
        weighted; zero when either kind is missing."""
        if len(good) == 0 or len(bad) == 0:
            return sum(p.sum() for p in self.model.parameters()) * 0.0
        n = self.hparams.pairs_per_batch
        generators = (self.step_generator(batch_idx, stream=1), self.step_generator(batch_idx, stream=2))
        loss = self.invalid_term.loss(lambda rows: self.rows_logprob(ids, mask, rows), ref_logps, good, bad, n,
                                      generators)
        self.log("train/invalid_loss", loss, batch_size=n)
        return self.invalid_term.weight * loss

    def rows_logprob(self, ids, mask, rows) -> torch.Tensor:
        """The policy's log-probabilities of the stored samples ``rows``, in length buckets (less padding)."""
        return bucketed_logprob(self.model, ids[rows].to(self.device), mask[rows].to(self.device))

    def pair_loss(self, ids, mask, energies, ref_logps, i, j) -> torch.Tensor:
        """Objective on pairs (i, j) of stored samples (token ids, energies, reference log-probs)."""
        pi_1, pi_2 = self.rows_logprob(ids, mask, torch.cat([i, j])).split(len(i))
        u, ref = energies.to(self.device), ref_logps.to(self.device)
        loss = self.objective(pi_1, pi_2, ref[i], ref[j], u[i], u[j])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(i))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.hparams.lr)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # global RNG states: nothing here draws from them today, but an objective or a re-enabled
        # dropout would, and a resumed run must then draw what the uninterrupted one drew
        checkpoint.setdefault("rng_states", {})[self.global_rank] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_rng(checkpoint.get("rng_states", {}).get(self.global_rank))

    def on_fit_start(self) -> None:
        expect_frozen(self, self.reference)

    def on_train_start(self) -> None:
        end_expect_frozen(self)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, n: int | None = None, seed: int | None = None,
                 model: torch.nn.Module | None = None) -> Evaluation:
        """Sample from the policy (or ``model``), score, and summarise (energy, property, validity, KL)."""
        hp = self.hparams
        generator = torch.Generator(device=self.device).manual_seed(hp.seed + 1 if seed is None else seed)
        batch = sample(self.model if model is None else model, self.tokenizer, n or hp.val_samples,
                       hp.max_new_tokens, hp.temperature, hp.top_k, generator=generator, return_model_logprobs=True)
        (energies, valid, values), ref = self._score_alongside(
            batch.texts, lambda: scoring_logprob(self.reference, batch.input_ids, batch.attention_mask))
        quality = self.sample_quality(batch.texts)
        stats = {**quality,
                 # mean log π − log π_ref over the sampled sequences: KL(π‖π_ref) exactly when
                 # sampling at T = 1 without top-k/top-p, a log-ratio diagnostic otherwise
                 "samples/kl_to_reference": float((batch.model_logprobs - ref).mean()),
                 **_summary("energy", energies), "energy/valid_mean": valid_mean(energies, valid)}
        for name, vals in values.items():
            stats.update(_summary(f"property/{name}", vals[valid]))
        # each property's values over the valid samples (the energies when the oracle reports none)
        value_map = {name: np.asarray(v, float)[valid] for name, v in values.items()} or {"energy": energies}
        return Evaluation(stats, energies, np.asarray(valid, bool), quality, value_map)

    def evaluate_policy(self, n: int | None = None, seed: int | None = None,
                        model: torch.nn.Module | None = None) -> dict[str, float]:
        """:meth:`evaluate`'s numbers; the whole evaluation is kept as :attr:`last_evaluation`."""
        self.last_evaluation = self.evaluate(n, seed, model)
        return self.last_evaluation.stats

    def reference_evaluation(self) -> Evaluation:
        """"Before", for the histograms and the before/after table: the reference's own samples,
        scored by the oracle. Call it once the module is on its device (``on_fit_start``)."""
        return self.evaluate(seed=self.hparams.seed + 7, model=self.reference)

    def sample_quality(self, texts: list[str]) -> dict[str, float]:
        """Validity, uniqueness, IntDiv1 (SMILES, DNA) and, with ``novelty_reference``, novelty."""
        quality = sample_quality(texts, self.hparams.domain)
        if self.hparams.novelty_reference:
            if self._novelty_hashes is None:
                self._novelty_hashes = self._read_novelty_reference(self.hparams.novelty_reference)
            novelty = Novelty([], self.hparams.domain)
            novelty.reference = self._novelty_hashes
            novelty.update(texts)
            quality["samples/novelty"] = float(novelty.compute())
        return quality

    def _read_novelty_reference(self, spec: str) -> set[int]:
        from datamodules.sources import moses_path, read_records

        given = spec == "moses"
        path = moses_path("train") if given else Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"novelty_reference {spec!r}: no file {path}")
        log.info("reading %s for novelty", path)
        return Novelty(read_records(path), self.hparams.domain, canonicalize_reference=not given).reference

    def val_dataloader(self) -> DataLoader:
        return sampling_validation_loader()  # one step: sample and score

    def validation_step(self, batch, batch_idx):
        stats = self.evaluate_policy()
        stats["step"] = float(self.global_step)
        self.history.append(stats)
        for key, value in stats.items():
            if key != "step" and math.isfinite(value):
                self.log(key, value, prog_bar=key in ("energy/mean", "samples/validity"), batch_size=1)


class OfflineAlignment(AlignmentBase):
    """Offline pairwise alignment (ERA by default; DPO as baseline) on one fixed sample set: the
    reference's own samples, made once and stored (:class:`~datamodules.reference_samples.ReferenceSamples`),
    or a user's scored file
    (:class:`~datamodules.scored_pairs.ScoredPairsDataModule`).

    Args:
        oracle: see :class:`AlignmentBase`, which takes the remaining arguments.
        dataset_path: where the scored samples live (Parquet); made when missing.
        invalid_from_reference: with a user's file (``ScoredPairsDataModule``), draw this many
            reference samples and add their invalid strings as the invalid term's negatives; 0: none.
    """

    accepted_datamodules: tuple[type, ...] = (ScoredPairsDataModule,)

    def __init__(self, oracle: Oracle, *, dataset_path: str = "runs/alignment/offline_samples.parquet",
                 invalid_from_reference: int = 0, **kwargs):
        super().__init__(oracle, **kwargs)
        # the training samples (setup): token ids, mask, energies, reference log-probs, pairs, rows
        self.sample_ids: torch.Tensor | None = None
        self.sample_mask: torch.Tensor | None = None
        self.energies: torch.Tensor | None = None
        self.ref_logps: torch.Tensor | None = None
        self.pair_i: torch.Tensor | None = None
        self.pair_j: torch.Tensor | None = None
        self.valid_rows: torch.Tensor | None = None
        self.invalid_rows: torch.Tensor | None = None
        #: the stored reference samples (setup), when they are the training samples; else None
        self.reference_samples: pd.DataFrame | None = None

    # ------------------------------------------------------------------ the sample set
    def dataset_settings(self) -> dict:
        """What the stored samples depend on: reference, tokenizer, sampling settings, oracle."""
        hp = self.hparams
        return {"policy": hp.policy, "tokenizer": hp.tokenizer, "num_samples": hp.num_samples, "top_k": hp.top_k,
                "temperature": hp.temperature, "max_new_tokens": hp.max_new_tokens, "seed": hp.seed,
                "oracle": describe(self.oracle)}

    def sample_set(self) -> ReferenceSamples:
        """The stored reference samples at ``dataset_path``, with this module's settings."""
        return ReferenceSamples(self.hparams.dataset_path, self.dataset_settings())

    def prepare_data(self) -> None:
        if self._scored_pairs() is None:
            self.sample_set().prepare(self.reference, self.tokenizer, self._score, self._run_device())

    def setup(self, stage: str) -> None:
        if stage != "fit" or self.pair_i is not None:
            return
        scored = self._scored_pairs()
        if scored is not None:
            scored.setup(stage)
            source, frame = scored.path, scored.frame.copy()
            if self.hparams.invalid_from_reference:
                frame = pd.concat([frame, self._reference_invalid_rows()], ignore_index=True)
        else:
            source, frame = self.hparams.dataset_path, self.sample_set().read()
            if self.hparams.invalid_from_reference:
                log.warning("invalid_from_reference applies to a user's file (ScoredPairsDataModule); the "
                            "reference's own samples already hold its invalid strings: ignored")
        if not np.isfinite(frame["energy"].to_numpy()).all():
            raise NonFiniteEnergyError(f"{source} holds non-finite energies")
        width = max(map(len, frame["input_ids"]))
        config = getattr(self.model, "config", None)
        limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
        if limit and width > limit:
            long = [k for k, tokens in enumerate(frame["input_ids"]) if len(tokens) > limit]
            raise ValueError(f"{source}: {len(long)} sample(s) have more than the model's {limit} positions "
                             f"(e.g. rows {long[:3]}, {width} tokens); shorten or drop them")
        ids = torch.full((len(frame), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, tokens in enumerate(frame["input_ids"]):
            ids[row, : len(tokens)] = torch.as_tensor(tokens)
            mask[row, : len(tokens)] = 1
        self.sample_ids, self.sample_mask = ids, mask
        self.energies = torch.tensor(frame["energy"].to_numpy(), dtype=torch.float32)
        if "ref_logprob" not in frame or frame["ref_logprob"].isna().any():
            # a user's file (or rows added to it): the frozen reference scores the missing ones once, here
            missing = np.flatnonzero(frame["ref_logprob"].isna()) if "ref_logprob" in frame else np.arange(len(frame))
            scored_lp = scoring_logprob(self.reference.to(self._run_device()), ids[missing], mask[missing])
            column = frame["ref_logprob"].to_numpy(float) if "ref_logprob" in frame else np.full(len(frame), np.nan)
            column[missing] = scored_lp.double().cpu().numpy()
            frame["ref_logprob"] = column
        self.ref_logps = torch.tensor(frame["ref_logprob"].to_numpy(), dtype=torch.float32)
        if scored is None:  # the reference's own samples: "before" (a user's file: reference_evaluation)
            self.reference_samples = frame
        i, j, self.valid_rows, self.invalid_rows = self._pairs_and_invalid(
            list(frame["sequence"]), frame["valid"].to_numpy(bool), self.hparams.seed)
        if len(i) == 0:
            raise ValueError(f"{source} has fewer than 2 distinct samples: no pairs")
        self.pair_i, self.pair_j = torch.from_numpy(i), torch.from_numpy(j)
        if scored is not None:
            # one rule picks the pairs, whichever way the samples arrive; the DataModule deals them out
            scored.set_pairs(i, j, self.hparams.pairs_per_batch, self.hparams.seed)
        log.info("offline data: %d samples (%d valid), %d pairs", len(frame), int(frame["valid"].sum()), len(i))

    def _reference_invalid_rows(self) -> pd.DataFrame:
        """The invalid strings among ``invalid_from_reference`` reference samples, as rows of a
        scored frame (distinct; their oracle energy, ``valid`` false; reference log-probs are scored
        with the file's)."""
        hp = self.hparams
        device = self._run_device()
        generator = torch.Generator(device=device).manual_seed(hp.seed + 13)
        batch = sample(self.reference.to(device), self.tokenizer, hp.invalid_from_reference, hp.max_new_tokens,
                       hp.temperature, hp.top_k, generator=generator)
        energies, valid, _ = self._score(batch.texts)
        lengths = batch.attention_mask.sum(1).tolist()
        rows, seen = [], set()
        for k, text in enumerate(batch.texts):
            if not valid[k] and text not in seen:
                seen.add(text)
                rows.append({"sequence": text, "input_ids": batch.input_ids[k][: lengths[k]].tolist(),
                             "energy": float(energies[k]), "valid": False})
        log.info("invalid_from_reference: %d distinct invalid strings among %d reference samples",
                 len(rows), hp.invalid_from_reference)
        return pd.DataFrame(rows, columns=["sequence", "input_ids", "energy", "valid"])

    def reference_evaluation(self) -> Evaluation:
        """"Before": the stored reference samples when they are the training samples (no new
        sampling); else (a user's file, whose energies may come from another scorer and whose
        molecules from another distribution) fresh reference samples."""
        frame = self.reference_samples
        if frame is None:
            return super().reference_evaluation()
        value_cols = [c for c in frame.columns if c.startswith("value_")]
        values = {c[len("value_"):]: frame[c].to_numpy(float) for c in value_cols} or {"energy": frame["energy"].to_numpy()}
        return Evaluation({}, frame["energy"].to_numpy(), frame["valid"].to_numpy(bool),
                          self.sample_quality(list(frame["sequence"])), values)

    def train_dataloader(self) -> ResumableBatches:
        # pair order is a function of (seed, epoch) and the position is checkpointed: exact resume
        pairs = ShuffledPairBatches(self.pair_i, self.pair_j, self.hparams.pairs_per_batch, self.hparams.seed,
                                    self.global_rank, self.trainer.world_size)
        return ResumableBatches(len(pairs), pairs, trainer_progress(self))

    def training_step(self, batch, batch_idx):
        i, j = batch
        loss = self.pair_loss(self.sample_ids, self.sample_mask, self.energies, self.ref_logps, i, j)
        if self.invalid_term is not None:
            loss = loss + self.invalid_loss(self.sample_ids, self.sample_mask, self.ref_logps, self.valid_rows,
                                            self.invalid_rows, batch_idx)
        return loss


class OnlineAlignment(AlignmentBase):
    """Online ERA/DPO: every ``resample_every`` steps, draw ``num_samples`` fresh sequences from
    the *current* policy, score them, compute their log-probabilities under the frozen reference,
    and train on random pairs of that round until the next one.

    Each DDP rank samples its own round with a rank-dependent seed. The current round (token ids,
    energies, reference log-probs) is stored in checkpoints so a resumed run continues it; the pairs
    picked at each step come from a generator seeded by (seed, rank, epoch, batch), so a resumed run
    is bit-identical to an uninterrupted one.

    Args:
        oracle: see :class:`AlignmentBase`, which takes the remaining arguments.
        resample_every: optimisation steps per round.
        steps_per_epoch: steps in one (nominal) epoch.
    """

    def __init__(self, oracle: Oracle, *, resample_every: int = 20, steps_per_epoch: int = 1000, **kwargs):
        super().__init__(oracle, **kwargs)
        #: the current round: token ids, mask, energies, reference log-probs, pairs, valid/invalid rows
        self.round: dict[str, torch.Tensor] | None = None
        self.rounds = 0

    def setup(self, stage: str) -> None:
        self._scored_pairs()  # refuses any DataModule

    def train_dataloader(self) -> ResumableBatches:
        # batches only count steps; resumable so that a resumed epoch has the uninterrupted length
        return ResumableBatches(self.hparams.steps_per_epoch, lambda epoch, b: torch.tensor([b]),
                                trainer_progress(self))

    @torch.no_grad()
    def _new_round(self) -> None:
        hp = self.hparams
        seed = hp.seed * 1_000_003 + self.global_step * 101 + self.global_rank
        generator = torch.Generator(device=self.device).manual_seed(seed)
        batch = sample(self.model, self.tokenizer, hp.num_samples, hp.max_new_tokens, hp.temperature, hp.top_k,
                       generator=generator)
        (energies, valid, _), ref = self._score_alongside(batch.texts, lambda: sequence_logprob(
            self.reference, batch.input_ids.to(self.device), batch.attention_mask.to(self.device)))
        i, j, good, bad = self._pairs_and_invalid(batch.texts, np.asarray(valid, bool), seed)
        self.round = {"ids": batch.input_ids, "mask": batch.attention_mask,
                      "energies": torch.tensor(energies, dtype=torch.float32), "ref": ref.float().cpu(),
                      "i": torch.from_numpy(i), "j": torch.from_numpy(j), "valid_rows": good, "invalid_rows": bad}
        self.rounds += 1
        self.log("online/round_energy_mean", float(energies.mean()), batch_size=1)
        self.log("online/round_validity", float(valid.mean()), batch_size=1)

    def training_step(self, batch, batch_idx):
        period = self.hparams.resample_every * self.trainer.accumulate_grad_batches  # in micro-batches
        if self.round is None or batch_idx % period == 0:
            self._new_round()
        r = self.round
        use_invalid = self.invalid_term is not None and len(r.get("invalid_rows", ())) and len(r.get("valid_rows", ()))
        if len(r["i"]) == 0 and not use_invalid:  # every sample identical: a zero loss keeps DDP ranks in step
            return sum(p.sum() for p in self.model.parameters()) * 0.0
        loss = 0.0
        if len(r["i"]):
            pick = torch.randint(len(r["i"]), (min(self.hparams.pairs_per_batch, len(r["i"])),),
                                 generator=self.step_generator(batch_idx))
            loss = self.pair_loss(r["ids"], r["mask"], r["energies"], r["ref"], r["i"][pick], r["j"][pick])
        if use_invalid:
            loss = loss + self.invalid_loss(r["ids"], r["mask"], r["ref"], r["valid_rows"], r["invalid_rows"], batch_idx)
        return loss

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["online_round"] = self.round
        checkpoint["online_rounds"] = self.rounds

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.round = checkpoint.get("online_round")
        self.rounds = checkpoint.get("online_rounds", 0)
