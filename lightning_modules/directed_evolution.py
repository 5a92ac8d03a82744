"""Few-shot directed evolution with a masked protein LM: rounds of propose → measure → align.

One ``fit`` run is one campaign on one landscape:

* round 0: propose ``variants_per_round`` (B) distinct variants from the reference (or uniformly
  at random for the ``random`` baseline) and measure them with the oracle;
* each Lightning epoch is one round: train the policy on pairs of *everything measured so far*
  with the pair objective (ERA by default, DPO as baseline; the reference is a frozen copy of
  the starting model), then propose B new variants that were never measured, measure them;
* after ``rounds`` (R) such rounds the run stops itself: (R + 1)·B measurements in all.

Why the minibatch of variants. "All pairs of everything measured" grows as n²/2 (1.2M pairs
after four GB1 rounds). Each step draws ``variants_per_step`` (m) distinct measured variants
uniformly and takes the ERA/DPO loss over all m(m−1)/2 pairs among them: an unbiased estimate
of the mean loss over all pairs, at m exact policy log-probabilities per step instead of 2 per
pair.

Baselines on the same budget (``method``): ``random`` (uniform over the 20^k variants, never
repeating one) and ``reference`` (the untrained reference proposes every round). With the small
random-init ESM, the reference is close to uniform over the 20 amino acids at every site, so the
two baselines nearly coincide — expected, since that model has no protein prior.

Per-round metrics (logged with the round number, written to ``rounds.csv`` and plotted as
``best_so_far.png`` in the run directory): best fitness so far (raw and normalised by the
landscape maximum), mean fitness of the round, fraction of the landscape's top 1 % found,
number of unique variants measured, fraction of the round with a table value, and how many
proposals had to be filled in uniformly because the policy kept proposing measured variants.
Variants absent from the table (and fitness ≤ 0) get the oracle's penalty energy in training;
in the fitness metrics an unmeasured variant counts as fitness 0.

The campaign state — measured variants, energies, fitness, reference log-probs, round index,
history and the random generator — is saved in every checkpoint, so ``--ckpt_path last.ckpt``
continues a campaign exactly where it stopped.

Single device only: every rank would propose its own variants under DDP.
"""

from __future__ import annotations

import copy
import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.pair_losses import ERA, PairObjective
from lightning_modules.plotting import pyplot, save_figure
from networks.architectures import Architecture, ESM
from networks.site_policy import SiteLayout, build_masked_lm, sample_variants, variant_logprob
from networks.tokenizers import load_tokenizer
from oracles.base import Oracle

log = logging.getLogger(__name__)

METHODS = ("policy", "reference", "random")


def landscape_summary(oracle: Oracle, top_fraction: float = 0.01) -> tuple[float, frozenset] | None:
    """(maximum fitness, the top ``top_fraction`` of variants) of a table oracle, else ``None``."""
    table = getattr(oracle, "fitness", None)
    if not isinstance(table, dict) or not table:
        return None
    variants = np.array(list(table))
    values = np.array(list(table.values()), dtype=np.float64)
    n_top = max(1, math.ceil(top_fraction * len(values)))
    top = variants[np.argsort(-values, kind="stable")[:n_top]]
    return float(values.max()), frozenset(top.tolist())


class DirectedEvolution(L.LightningModule):
    """Directed-evolution campaign with an ESM site policy (see the module docstring).

    Args:
        oracle: measures variants (lower energy is better), normally a
            :class:`~oracles.fitness_table.FitnessTable`; it is called with full sequences.
        policy: the masked LM: ``ESM(...)`` (random init, no prior; the default) or
            ``Pretrained(path, masked_lm=True)`` (any local Hugging Face ESM directory).
        tokenizer: the model's tokenizer (``protein``: the ESM alphabet).
        objective: the pair loss, ``ERA(beta, gamma)`` (default) or ``DPO(beta)``.
        method: ``policy`` (train and propose from the policy), ``reference`` (propose from the
            untrained reference) or ``random`` (uniform proposals).
        parent / sites: parent sequence and 1-indexed sites; default: the oracle's.
        order: generation order of the sites (a permutation of ``range(k)``).
        context: parent residues kept around the sites (``None``: all; see ``SiteLayout``).
        variants_per_round: B, proposals measured per round (round 0 included).
        rounds: R, training rounds after round 0.
        steps_per_round: optimisation steps per round.
        variants_per_step: m, measured variants per step (all m(m−1)/2 pairs among them).
        lr / weight_decay: AdamW settings.
        temperature / top_k: proposal sampling settings.
        max_attempts: draws of the sampler before shortfalls are filled uniformly.
        chunk_size: rows per forward pass when scoring.
        seed: seeds the campaign's random generator (proposals and minibatches).
        output_dir: where ``rounds.csv``, ``measured.csv`` and ``best_so_far.png`` go
            (default: the trainer's log directory).
    """

    def __init__(self, oracle: Oracle, policy: Architecture | dict | None = None, tokenizer: str = "protein",
                 objective: PairObjective | None = None, method: str = "policy", parent: str | None = None,
                 sites: list[int] | None = None, order: list[int] | None = None, context: int | None = None,
                 variants_per_round: int = 384, rounds: int = 4, steps_per_round: int = 100,
                 variants_per_step: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
                 temperature: float = 1.0, top_k: int | None = None, max_attempts: int = 20,
                 chunk_size: int = 256, seed: int = 0, output_dir: str | None = None):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if variants_per_round < 2 or rounds < 0 or variants_per_step < 2:
            raise ValueError("need variants_per_round >= 2, variants_per_step >= 2 and rounds >= 0")
        self.save_hyperparameters(ignore=["oracle", "policy", "objective"])
        architecture = Architecture.from_config(policy) if policy is not None else ESM()
        self.hparams["policy"] = architecture.to_config()
        self.tokenizer = load_tokenizer(tokenizer)
        self.model = build_masked_lm(architecture, self.tokenizer).eval()  # no dropout: see ``train``
        self.reference = copy.deepcopy(self.model).requires_grad_(False)
        self.oracle = oracle
        self.objective = objective or ERA()
        parent = parent or getattr(oracle, "parent", None)
        sites = sites or getattr(oracle, "sites", None)
        if parent is None or sites is None:
            raise ValueError(f"oracle {type(oracle).__name__} has no parent/sites: give them to the module")
        self.layout = SiteLayout(parent, sites, self.tokenizer, order, context)
        self.landscape = landscape_summary(oracle)
        self._reset_campaign()

    # ------------------------------------------------------------------ campaign state
    def _reset_campaign(self) -> None:
        self.variants: list[str] = []
        self.energies = torch.zeros(0, dtype=torch.float64)
        self.fitness = torch.zeros(0, dtype=torch.float64)  # NaN where the table has no value
        self.ref_logps = torch.zeros(0)
        self.round_of = torch.zeros(0, dtype=torch.long)
        self.round = -1  # last measured round
        self.history: list[dict[str, float]] = []
        self.rng = torch.Generator().manual_seed(int(self.hparams.seed))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["directed_evolution"] = {
            "variants": list(self.variants), "energies": self.energies, "fitness": self.fitness,
            "ref_logps": self.ref_logps, "round_of": self.round_of, "round": self.round,
            "history": [dict(h) for h in self.history], "rng": self.rng.get_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("directed_evolution")
        if state is None:
            return
        self.variants = list(state["variants"])
        self.energies, self.fitness = state["energies"], state["fitness"]
        self.ref_logps, self.round_of = state["ref_logps"], state["round_of"]
        self.round, self.history = int(state["round"]), [dict(h) for h in state["history"]]
        self.rng.set_state(state["rng"])

    # ------------------------------------------------------------------ proposals
    def _device_generator(self) -> torch.Generator:
        seed = int(torch.randint(0, 2**62, (1,), generator=self.rng))
        return torch.Generator(device=self.device).manual_seed(seed)

    def _uniform(self, n: int, exclude: set[str]) -> list[str]:
        """``n`` distinct variants not in ``exclude``, uniform over the 20^k variants."""
        k, total = self.layout.k, self.layout.n_variants
        if n > total - len(exclude):
            raise ValueError(f"asked for {n} new variants; only {total - len(exclude)} unmeasured remain")
        seen, out = set(exclude), []
        powers = torch.tensor([20 ** (k - 1 - i) for i in range(k)])
        while len(out) < n:
            codes = torch.randint(0, total, (2 * (n - len(out)),), generator=self.rng)
            for variant in self.layout.decode((codes.unsqueeze(1) // powers) % 20):
                if variant not in seen:
                    seen.add(variant)
                    out.append(variant)
                    if len(out) == n:
                        break
        return out

    @torch.no_grad()
    def propose(self, source: str) -> tuple[list[str], int]:
        """B new distinct unmeasured variants from ``policy``, ``reference`` or ``random``;
        returns them and how many had to be filled in uniformly."""
        hp, exclude = self.hparams, set(self.variants)
        n = min(hp.variants_per_round, self.layout.n_variants - len(exclude))
        if source == "random":
            return self._uniform(n, exclude), 0
        model = self.model if source == "policy" else self.reference
        drawn = sample_variants(model, self.layout, n, hp.temperature, hp.top_k, self._device_generator(),
                                exclude=exclude, unique=True, max_attempts=hp.max_attempts,
                                chunk_size=hp.chunk_size)
        variants = list(drawn.variants)
        filled = n - len(variants)
        if filled:
            log.warning("round %d: the %s proposed only %d new variants in %d draws; %d filled uniformly",
                        self.round + 1, source, len(variants), drawn.attempts, filled)
            variants += self._uniform(filled, exclude | set(variants))
        return variants, filled

    @torch.no_grad()
    def measure(self, variants: Sequence[str]) -> dict[str, torch.Tensor]:
        """Oracle energies and raw fitness of variants (as full sequences)."""
        scores = self.oracle([self.layout.full_sequence(v) for v in variants])
        energies = scores.energies.double()
        if energies.ndim != 1 or not torch.isfinite(energies).all():
            raise ValueError(f"oracle {self.oracle.name!r} must return one finite energy per variant")
        values = scores.values.get(self.oracle.name)
        fitness = torch.as_tensor(np.asarray(values, dtype=np.float64)) if values is not None \
            else -energies  # no raw value: the metrics use −U
        fitness = torch.where(scores.valid, fitness, torch.full_like(fitness, float("nan")))
        return {"energies": energies, "fitness": fitness}

    def _add_round(self, variants: list[str], filled: int) -> dict[str, float]:
        measured = self.measure(variants)
        ref = variant_logprob(self.reference, self.layout, variants, chunk_size=self.hparams.chunk_size)
        self.round += 1
        self.variants += variants
        self.energies = torch.cat([self.energies, measured["energies"]])
        self.fitness = torch.cat([self.fitness, measured["fitness"]])
        self.ref_logps = torch.cat([self.ref_logps, ref.detach().float().cpu()])
        self.round_of = torch.cat([self.round_of, torch.full((len(variants),), self.round, dtype=torch.long)])
        stats = self.round_metrics(filled)
        self.history.append(stats)
        for logger in self.loggers:
            logger.log_metrics(stats, step=self.global_step)
        log.info("round %d: %s", self.round, ", ".join(f"{k.split('/')[-1]}={v:.4g}" for k, v in stats.items()))
        self._write_outputs()
        return stats

    def round_metrics(self, filled: int = 0) -> dict[str, float]:
        fit = torch.nan_to_num(self.fitness, nan=0.0)
        this = self.round_of == self.round
        stats = {
            "round/index": float(self.round),
            "round/best_fitness": float(fit.max()),
            "round/mean_fitness": float(fit[this].mean()),
            "round/round_best_fitness": float(fit[this].max()),
            "round/energy_mean": float(self.energies[this].mean()),
            "round/measured_fraction": float((~self.fitness[this].isnan()).double().mean()),
            "round/unique": float(len(set(self.variants))),
            "round/measurements": float(len(self.variants)),
            "round/filled_uniformly": float(filled),
        }
        if self.landscape is not None:
            maximum, top = self.landscape
            stats["round/best_normalised"] = stats["round/best_fitness"] / maximum
            stats["round/top1_fraction"] = len(top.intersection(self.variants)) / len(top)
        return stats

    # ------------------------------------------------------------------ Lightning hooks
    def on_train_start(self) -> None:
        if self.round < 0:  # a fresh campaign (a resumed one has its rounds already)
            variants, filled = self.propose("random" if self.hparams.method == "random" else "reference")
            self._add_round(variants, filled)
        if self.round >= self.hparams.rounds:
            self.trainer.should_stop = True

    def train_dataloader(self) -> DataLoader:
        steps = self.hparams.steps_per_round if self.hparams.method == "policy" else 1
        return DataLoader(TensorDataset(torch.arange(max(1, steps))), batch_size=1)

    def train(self, mode: bool = True):
        """The networks stay in eval mode (no dropout) whatever mode is asked for: the policy is
        trained on exactly the log π it samples from, reference log-probabilities are
        deterministic, and a resumed run repeats an uninterrupted one (dropout would draw from
        the global RNG, which a checkpoint does not hold)."""
        super().train(mode)
        self.model.eval()
        self.reference.eval()
        return self

    def training_step(self, batch, batch_idx):
        if self.hparams.method != "policy":
            return None  # baselines propose without training
        self.model.eval()  # whatever mode a trainer or callback left it in
        n = len(self.variants)
        m = min(self.hparams.variants_per_step, n)
        pick = torch.randperm(n, generator=self.rng)[:m]
        i, j = torch.triu_indices(m, m, offset=1)
        u = self.energies[pick].float().to(self.device)
        ref = self.ref_logps[pick].to(self.device)
        logps = variant_logprob(self.model, self.layout, [self.variants[p] for p in pick.tolist()],
                                chunk_size=self.hparams.chunk_size)
        loss = self.objective(logps[i], logps[j], ref[i], ref[j], u[i], u[j])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(i))
        return loss

    def on_train_epoch_end(self) -> None:
        if self.round >= self.hparams.rounds:
            self.trainer.should_stop = True
            return
        if len(set(self.variants)) >= self.layout.n_variants:
            log.warning("every one of the %d variants is measured: the campaign ends at round %d",
                        self.layout.n_variants, self.round)
            self.trainer.should_stop = True
            return
        variants, filled = self.propose(self.hparams.method)
        self._add_round(variants, filled)
        if self.round >= self.hparams.rounds:
            self.trainer.should_stop = True

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.hparams.lr,
                                 weight_decay=self.hparams.weight_decay)

    # ------------------------------------------------------------------ outputs
    def _output_dir(self) -> Path | None:
        if self.hparams.output_dir:
            return Path(self.hparams.output_dir)
        trainer = self._trainer
        if trainer is None or trainer.logger is None:  # nowhere configured: write nothing
            return None
        return Path(trainer.log_dir or trainer.default_root_dir)

    def _write_outputs(self) -> None:
        directory = self._output_dir()
        if directory is None or (self._trainer is not None and not self.trainer.is_global_zero):
            return
        directory.mkdir(parents=True, exist_ok=True)
        keys = list(self.history[0])
        with open(directory / "rounds.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.history)
        with open(directory / "measured.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["variant", "round", "fitness", "energy", "sequence"])
            for v, r, f, e in zip(self.variants, self.round_of.tolist(), self.fitness.tolist(), self.energies.tolist()):
                writer.writerow([v, r, "" if math.isnan(f) else f, e, self.layout.full_sequence(v)])
        label = self.hparams.method if self.hparams.method != "policy" else self.objective.name
        plot_best_so_far({label: [self.history]}, directory / "best_so_far.png")


# ---------------------------------------------------------------------- campaigns and plots


def best_so_far(history: Sequence[dict], normalised: bool = True) -> np.ndarray:
    key = "round/best_normalised" if normalised and "round/best_normalised" in history[0] else "round/best_fitness"
    return np.array([h[key] for h in history])


def plot_best_so_far(results: dict[str, list[list[dict]]], path: str | Path, title: str = "") -> Path:
    """Best fitness so far vs round, one line per method (mean over runs, min–max band)."""
    fig, ax = pyplot().subplots(figsize=(5.5, 4))
    normalised = all("round/best_normalised" in runs[0][0] for runs in results.values() if runs and runs[0])
    for method, runs in results.items():
        curves = [best_so_far(r, normalised) for r in runs if r]
        if not curves:
            continue
        length = min(map(len, curves))
        stack = np.stack([c[:length] for c in curves])
        x = np.arange(length)
        line, = ax.plot(x, stack.mean(0), marker="o", label=f"{method} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(x, stack.min(0), stack.max(0), alpha=0.2, color=line.get_color())
    ax.set_xlabel("round")
    ax.set_ylabel("best fitness so far" + (" / landscape max" if normalised else ""))
    ax.set_xticks(range(max((len(r) for runs in results.values() for r in runs), default=1)))
    if title:
        ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)


def run_campaign(oracle: Oracle, method: str = "policy", objective: PairObjective | None = None,
                 seed: int = 0, accelerator: str = "cpu", output_dir: str | None = None,
                 **kwargs) -> list[dict[str, float]]:
    """One campaign without the CLI (for sweeps): returns the per-round history."""
    L.seed_everything(seed, verbose=False)
    module = DirectedEvolution(oracle, objective=objective, method=method, seed=seed, output_dir=output_dir, **kwargs)
    trainer = L.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, max_epochs=-1,
                        num_sanity_val_steps=0)
    trainer.fit(module)
    return module.history
