"""Multi-objective fine-tuning: N expert copies of one policy, one per objective.

One module serves the three methods of the Iterative Rewarded Soups paper:

- **Iterative Rewarded Soups (IRS)**: N experts, each updated on its own objective; the
  :class:`callbacks.WeightMergingCallback` merges them every m steps into a weighted average,
  restarts all experts from it and picks which M of N experts train in the next period.
- **Rewarded Soups (RS)**: the same N experts trained independently (no merging callback); the
  :class:`callbacks.SoupFront` callback merges them once at the end over a grid of weights.
- **MORLHF**: one policy (``scalarization`` = the weights cᵢ) trained on Σ cᵢUᵢ / Σ cᵢ.

Each training step, every *active* expert draws a batch of its own samples (a :class:`Round`,
reused for ``update.inner_steps`` steps), scores it with its objective and takes the configured
:class:`~lightning_modules.policy_updates.PolicyUpdate` (RLOO, PPO or online ERA). One optimiser
holds all experts; inactive experts get no gradient (their grads are dropped before the step, so
Adam leaves them and their state alone), yet take part in the graph with weight zero so that DDP
sees every parameter on every rank.

Validation samples from the *soup* (the weighted average of the experts with ``eval_weights``,
uniform by default — after a merge, IRS's output policy) and logs the mean energy of each
objective, validity and uniqueness. Energies are lower-is-better; rewards are their negatives.

``evaluate(..., detailed=True)`` is the evaluation the protocol reports (``callbacks.mo_eval``):
per objective the mean reward (−energy, as trained on) and the mean raw property, their average
and balance across objectives, validity, uniqueness, IntDiv1, and the KL to the reference
estimated on the policy's own samples, mean(log π(y) − log π_ref(y)). The module counts the
oracle calls its training rounds make and the expert updates it takes, so curves can be drawn
against budget as well as against KL.
"""

from __future__ import annotations

import copy
import logging
import math

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.alongside import alongside
from lightning_modules.frozen import end_expect_frozen, expect_frozen, frozen_copy
from lightning_modules.metrics import sample_quality, validity_and_uniqueness
from lightning_modules.pareto import balance
from lightning_modules.policy_updates import RLOO, PolicyUpdate, Round
from networks.architectures import Architecture, Pretrained, disable_dropout
from networks.sampling import bucketed_logprob, sample, scoring_logprob
from networks.tokenizers import load_tokenizer
from oracles.base import Oracle, invalid_preferred

log = logging.getLogger(__name__)


def objective_names(oracle: Oracle) -> list[str]:
    """One name per energy column: an ``EnergyVector``'s parts, a multi-task oracle's ``names``."""
    names = getattr(oracle, "names", None)
    return list(names) if names else [oracle.name]


class MultiObjectiveModule(L.LightningModule):
    """N experts (or one scalarised policy) fine-tuned on N objectives.

    Args:
        oracle: the objectives, normally an ``EnergyVector`` (one energy column per objective).
        policy: the starting network for every expert, normally ``Pretrained(path)``.
        tokenizer: the network's tokenizer.
        update: how an expert learns from its samples (``RLOO`` by default, ``PPO``, ``ERAUpdate``).
        scalarization: MORLHF weights cᵢ; one policy is trained on Σ cᵢUᵢ / Σ cᵢ.
        samples_per_step: samples each active expert draws per round.
        eval_weights: soup weights used for validation (uniform when ``None``).
        lr: Adam learning rate (the IRS paper: 1.41e-5).
        top_k / temperature / max_new_tokens: sampling settings.
        val_samples: soup samples scored at each validation.
        steps_per_epoch: training steps per (virtual) epoch.
        domain: ``smiles``/``dna``/``protein`` for validity.
    """

    def __init__(self, oracle: Oracle, policy: Architecture | dict | None = None, tokenizer: str = "smiles",
                 update: PolicyUpdate | None = None, scalarization: list[float] | None = None,
                 samples_per_step: int = 64, eval_weights: list[float] | None = None, lr: float = 1.41e-5,
                 top_k: int | None = None, temperature: float = 1.0, max_new_tokens: int = 100,
                 val_samples: int = 256, steps_per_epoch: int = 1000, seed: int = 0, domain: str = "smiles"):
        super().__init__()
        self.save_hyperparameters(ignore=["oracle", "policy", "update"])
        architecture = Architecture.from_config(policy or Pretrained("molgpt-moses"))
        self.hparams["policy"] = architecture.to_config()
        self.tokenizer = load_tokenizer(tokenizer)
        self.oracle = oracle
        self.update = update or RLOO()
        self.names = objective_names(oracle)
        if scalarization is not None:
            if len(scalarization) != len(self.names) or sum(scalarization) <= 0 or min(scalarization) < 0:
                raise ValueError(f"scalarization needs {len(self.names)} non-negative weights with a positive "
                                 f"sum (objectives {self.names}), got {scalarization}")
        base = disable_dropout(architecture.build(self.tokenizer))
        num_experts = 1 if scalarization is not None else len(self.names)
        self.experts = nn.ModuleList([copy.deepcopy(base) for _ in range(num_experts)])
        self.reference = frozen_copy(base)
        self.soup = frozen_copy(base)  # evaluation copy, not trained
        self.active: list[int] = list(range(num_experts))
        self.rounds: dict[int, Round] = {}
        self.history: list[dict[str, float]] = []
        self.oracle_calls = 0  # sequences scored for training (rounds, merge-weight selection)
        self.expert_updates = 0  # Σ over optimiser steps of the experts that took a gradient step

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    # ------------------------------------------------------------------ scoring
    def energy_matrix(self, texts: list[str], scores=None) -> tuple[np.ndarray, np.ndarray]:
        """Energies [n, N objectives] and validity [n]; non-finite energies are an error.
        ``scores``: the oracle's answer for ``texts`` when the caller already has it."""
        scores = self.oracle(texts) if scores is None else scores
        energies = scores.energies.double().numpy().reshape(len(texts), -1)
        if energies.shape[1] != len(self.names):
            raise ValueError(f"oracle {self.oracle.name!r} gave {energies.shape[1]} energy columns for "
                             f"objectives {self.names}")
        bad = [name for name, ok in zip(self.names, np.isfinite(energies).all(0)) if not ok]
        if bad:
            raise ValueError(f"objective(s) {bad} returned non-finite energies; give those oracles a finite "
                             "penalty for invalid samples instead of training on NaN/inf")
        valid = scores.valid.numpy()
        if not getattr(self, "_warned_penalty", False):  # once per run: a penalty that rewards invalid output
            for message in invalid_preferred(energies, valid, self.names):
                self._warned_penalty = True
                log.warning(message)
        return energies, valid

    def expert_energy(self, expert: int, energies: np.ndarray) -> np.ndarray:
        """The energy expert ``expert`` is trained on: its own column, or MORLHF's weighted sum."""
        c = self.hparams.scalarization
        if c is not None:
            c = np.asarray(c, dtype=np.float64)
            return energies @ c / c.sum()
        return energies[:, expert]

    # ------------------------------------------------------------------ merging
    def _tensor_groups(self) -> list[list[torch.Tensor]]:
        """Parameters and floating-point buffers of every expert, aligned by name."""
        per_expert = [_merged_tensors_of(expert) for expert in self.experts]
        return [[t[name] for t in per_expert] for name in per_expert[0]]

    def _weights(self, weights) -> torch.Tensor:
        w = torch.as_tensor(weights if weights is not None else [1.0] * self.num_experts, dtype=torch.float64)
        if w.numel() != self.num_experts or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"merge weights must be {self.num_experts} non-negative numbers with a positive sum, "
                             f"got {w.tolist()}")
        return w / w.sum()

    @torch.no_grad()
    def merged_tensors(self, weights=None) -> list[torch.Tensor]:
        """Σ wᵢ θᵢ for every parameter/floating buffer (weights normalised to sum to 1)."""
        w = self._weights(weights)
        return [sum(float(wi) * t for wi, t in zip(w, group)) for group in self._tensor_groups()]

    @torch.no_grad()
    def merge_experts(self, weights=None) -> None:
        """In place: every expert becomes the weighted average of all experts."""
        groups = self._tensor_groups()
        for group, merged in zip(groups, self.merged_tensors(weights)):
            for tensor in group:
                tensor.copy_(merged)
        self.rounds.clear()  # samples of the pre-merge experts are stale

    @torch.no_grad()
    def load_soup(self, weights=None) -> nn.Module:
        """The evaluation copy set to the soup Σ wᵢ θᵢ (the experts are untouched)."""
        for target, merged in zip(_merged_tensors_of(self.soup).values(), self.merged_tensors(weights)):
            target.copy_(merged)
        return self.soup

    # ------------------------------------------------------------------ training
    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.arange(self.hparams.steps_per_epoch)), batch_size=1)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.zeros(1)), batch_size=1)

    def _seed(self, *parts: int) -> int:
        seed = self.hparams.seed
        for p in parts:
            seed = (seed * 1_000_003 + int(p)) % (2**62)
        return seed

    @torch.no_grad()
    def _new_round(self, expert: int) -> Round:
        hp = self.hparams
        model = self.reference if self.update.sample_from == "reference" else self.experts[expert]
        generator = torch.Generator(device=self.device).manual_seed(
            self._seed(self.global_step, self.global_rank, expert))
        need = self.update.old_logps
        batch = sample(model, self.tokenizer, hp.samples_per_step, hp.max_new_tokens, hp.temperature, hp.top_k,
                       generator=generator, return_model_logprobs=need == "sequence")
        ids, mask = batch.input_ids.to(self.device), batch.attention_mask.to(self.device)

        def logps(net):  # per token, zero-padded to the round's width; length buckets: less padding
            return bucketed_logprob(net, ids, mask, reduce=False).float().cpu()

        # the oracle in a thread while the old policy's (where needed) and the reference's log-probs run
        (energies, valid), (old, ref) = alongside(self.device, lambda: self.energy_matrix(batch.texts), lambda: (
            logps(model) if need == "tokens" else None, logps(self.reference) if self.update.needs_reference else None))
        self.oracle_calls += len(batch.texts)
        round_ = Round(ids.cpu(), mask.cpu(), torch.tensor(self.expert_energy(expert, energies), dtype=torch.float32),
                       old, ref, batch.texts, int(self.global_step),
                       batch.model_logprobs.float() if need == "sequence" else None)
        prefix = f"expert{expert}" if self.num_experts > 1 else "policy"
        self.log(f"{prefix}/round_energy", float(round_.energies.mean()), batch_size=1)
        round_ = self.rounds[expert] = self.update.prepare(round_)
        self.log(f"{prefix}/round_validity", float(valid.mean()), batch_size=1)
        return round_

    def training_step(self, batch, batch_idx):
        total = None
        for e, expert in enumerate(self.experts):
            if e not in self.active:
                # weight-zero term: DDP sees every parameter on every rank; grads dropped below
                zero = sum(p.sum() for p in expert.parameters()) * 0.0
                total = zero if total is None else total + zero
                continue
            round_ = self.rounds.get(e)
            if round_ is None or self.global_step - round_.made_at_step >= self.update.inner_steps:
                round_ = self._new_round(e)
            round_ = _on_device(round_, self.device)
            token_logps = bucketed_logprob(expert, round_.input_ids, round_.attention_mask, reduce=False)
            loss, stats = self.update.loss(token_logps, round_)
            prefix = f"expert{e}" if self.num_experts > 1 else "policy"
            self.log(f"{prefix}/loss", loss, batch_size=1)
            for key, value in stats.items():
                self.log(f"{prefix}/{key}", value, batch_size=1)
            total = loss if total is None else total + loss
        self.expert_updates += len(self.active)
        self.log("train/loss", total, prog_bar=True, batch_size=1)
        return total

    def on_fit_start(self) -> None:
        expect_frozen(self, self.reference, self.soup)

    def on_train_start(self) -> None:
        end_expect_frozen(self)

    def on_before_optimizer_step(self, optimizer) -> None:
        for e, expert in enumerate(self.experts):
            if e not in self.active:
                for p in expert.parameters():
                    p.grad = None  # Adam skips parameters without a gradient

    def configure_optimizers(self):
        return torch.optim.Adam(self.experts.parameters(), lr=self.hparams.lr)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["multi_objective"] = {"active": list(self.active),
                                         "rounds": {e: r.to_state() for e, r in self.rounds.items()},
                                         "oracle_calls": self.oracle_calls, "expert_updates": self.expert_updates}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("multi_objective", {})
        self.active = list(state.get("active", range(self.num_experts)))
        self.rounds = {int(e): Round.from_state(r) for e, r in state.get("rounds", {}).items()}
        self.oracle_calls = int(state.get("oracle_calls", 0))
        self.expert_updates = int(state.get("expert_updates", 0))

    @torch.no_grad()
    def expert_spread(self) -> float:
        """max over experts i of ‖θᵢ − θ₀‖ / ‖θ₀‖ (parameters and floating buffers): 0 after a
        merge (every expert is the merged policy), 0 for a single policy."""
        if self.num_experts < 2:
            return 0.0
        vectors = [torch.cat([t.detach().double().flatten() for t in _merged_tensors_of(e).values()])
                   for e in self.experts]
        scale = float(vectors[0].norm()) or 1.0
        return max(float((v - vectors[0]).norm()) for v in vectors[1:]) / scale

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, weights=None, n: int | None = None, seed: int | None = None,
                 detailed: bool = False) -> dict[str, float]:
        """Sample the soup with ``weights``, score every objective, summarise.

        ``energy/<objective>`` is the mean energy over all samples (invalid ones at the oracle's
        penalty, as trained on). With ``detailed``, also ``reward/<objective>`` (−energy),
        ``raw/<objective>`` (the oracle's raw property over the valid samples, where it reports
        one), ``average_reward`` and the balance across objectives (``balance_cv``, ``icv``,
        ``reward_sd``; :func:`lightning_modules.pareto.balance`), IntDiv1 (SMILES, DNA), the share of
        the samples the reward model can read (parsable; whatever the oracle's penalties) that lie
        outside its input domain (``samples/outside_domain``, when the oracle has one:
        ``oracles.domain``), and
        ``kl`` = mean over the samples of log π(y) − log π_ref(y), an unbiased estimate of
        KL(π‖π_ref) for the policy as sampled (temperature 1, no top-k/top-p; otherwise the
        estimate is for the unmodified model's log-probabilities on the truncated samples).
        """
        hp = self.hparams
        model = self.load_soup(weights if weights is not None else hp.eval_weights)
        generator = torch.Generator(device=self.device).manual_seed(self._seed(10**6 + (seed or 0)))
        batch = sample(model, self.tokenizer, n or hp.val_samples, hp.max_new_tokens, hp.temperature, hp.top_k,
                       generator=generator, return_model_logprobs=detailed)
        if not detailed:
            energies, valid = self.energy_matrix(batch.texts)
            quality = validity_and_uniqueness(batch.texts, hp.domain)
            stats = {"samples/validity": quality["validity"], "samples/uniqueness": quality["uniqueness"]}
            for k, name in enumerate(self.names):
                stats[f"energy/{name}"] = float(energies[:, k].mean())
            return stats
        scores = self.oracle(batch.texts)
        energies, valid = self.energy_matrix(batch.texts, scores)
        stats = {"samples/intdiv1": float("nan"), **sample_quality(batch.texts, hp.domain)}  # IntDiv1: SMILES and DNA
        for k, name in enumerate(self.names):
            stats[f"energy/{name}"] = float(energies[:, k].mean())
            stats[f"reward/{name}"] = -stats[f"energy/{name}"]
            raw = scores.values.get(name)
            finite = np.isfinite(raw) if raw is not None else np.zeros(0, bool)
            stats[f"raw/{name}"] = float(np.asarray(raw)[finite].mean()) if finite.any() else float("nan")
        stats.update(balance([stats[f"reward/{name}"] for name in self.names]))
        outside = getattr(self.oracle, "outside_domain", None)
        outside = outside(batch.texts) if callable(outside) else None
        if outside is not None:  # the reward model's input domain (oracles.domain): share of the readable samples
            stats["samples/outside_domain"] = float(np.nanmean(outside)) if np.isfinite(outside).any() else float("nan")
        ref = scoring_logprob(self.reference, batch.input_ids, batch.attention_mask)
        stats["kl"] = float((batch.model_logprobs.double() - ref.double()).mean())
        stats["n_samples"] = float(len(batch.texts))
        return stats

    def validation_step(self, batch, batch_idx):
        stats = self.evaluate()
        self.history.append({"step": float(self.global_step), **stats})
        for key, value in stats.items():
            if math.isfinite(value):
                self.log(key, value, batch_size=1, prog_bar=key == "samples/validity")


def _merged_tensors_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a merge averages: parameters and floating-point buffers, by name, in a fixed order."""
    tensors = dict(model.named_parameters())
    tensors.update((n, b) for n, b in model.named_buffers() if b.is_floating_point())
    return tensors


def _on_device(round_: Round, device) -> Round:
    fields = round_.to_state()
    for key, value in fields.items():
        if isinstance(value, torch.Tensor):
            fields[key] = value.to(device)
    return Round.from_state(fields)
