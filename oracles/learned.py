"""A trained reward model (``lightning_modules.reward_model``) served as an oracle.

Why: properties without a formula — QM9's polarizability, HOMO–LUMO gap and U0, a DNA sequence's
cell-type specificity — are rewarded through a model trained on measurements. The oracle is the
only thing an alignment run sees, so it keeps the oracle contract of ``oracles.base``: float64
energies (lower is better), a validity mask, raw values, and the oracle's ``penalty`` (never NaN)
for inputs the model cannot score — unparsable SMILES, DNA with letters other than ACGT or of a
length the model was not trained on.

Energies: one column per selected task (shape ``[n, k]``; ``[n]`` for a single task). Each task's
raw prediction becomes an energy by its ``transforms`` entry (any ``oracles.transforms`` object,
e.g. ``Harmonic(mu, sigma)`` for a target value), else by its direction: ``maximize`` → −value,
``minimize`` → value. Inference is batched on the model's device; each distinct input string is
predicted once per batch and kept in an LRU cache.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

from oracles.base import Oracle, Scores, _check_batch
from oracles.canonical import canonicaliser
from oracles.transforms import Transform

log = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize")


def _lru_lookup(cache: OrderedDict, keys: Sequence[str], compute, size: int) -> dict:
    """{key: value} for the distinct ``keys``: cached values (marked as recently used) and, in one
    ``compute(missing) -> values`` call, the missing ones, which join the cache; the cache then
    drops its least recently used entries beyond ``size``. The returned dict holds every key even
    when a batch is larger than the cache."""
    found = {}
    missing = []
    for key in dict.fromkeys(keys):
        if key in cache:
            found[key] = cache[key]
            cache.move_to_end(key)
        else:
            missing.append(key)
    if missing:
        fresh = dict(zip(missing, compute(missing), strict=True))  # one value per input, or an error
        found.update(fresh)
        cache.update(fresh)
        while len(cache) > size:
            cache.popitem(last=False)
    return found


class LearnedOracle(Oracle):
    """Energies from a reward-model checkpoint.

    Args:
        checkpoint: a directory written by ``save_reward_model`` (e.g. ``checkpoints/reward-qm9``),
            a name under ``checkpoints/`` (``reward-qm9``), or a Lightning ``.ckpt``.
        tasks: the model outputs to use, in this order (default: all). One task gives energies
            of shape ``[n]``, several ``[n, k]``.
        directions: ``{task: maximize | minimize}``; tasks not named are maximised.
        transforms: ``{task: Transform}`` mapping that task's raw value to its energy (overrides
            its direction).
        transform: one transform for every task without its own entry (overrides directions).
        penalty: energy of invalid inputs (and of out-of-domain ones with ``out_of_domain: penalty``).
        batch_size: inputs per forward pass.
        device: ``cpu``, ``cuda``, ``cuda:1`` … or ``auto`` (GPU when there is one).
        cache_size: predictions kept in memory (distinct input strings).
        standardize: regression energies in training standard deviations, ±(value − mean)/std,
            so that objectives in different units (bohr³, Hartree) weigh alike in a weighted sum
            and in a hypervolume. Transforms, where given, then act on the standardised value.
        out_of_domain: what to do with an input whose prediction for any selected task lies more
            than ``max_z`` training standard deviations from the training mean (regression only):
            ``warn`` (once; the value is used) or ``penalty`` (the input is invalid and gets the
            penalty energy). Why ``penalty`` exists: a policy optimised against a reward model
            drifts to where the model extrapolates without bound, and there the "reward" is
            noise it can climb forever (docs/multi_objective.md, the QM9 task).
        max_z: the out-of-domain threshold, in training standard deviations.
        domain_check: the model's *input* applicability domain (``oracles.domain``: nearest-
            neighbour similarity to its training inputs, from ``domain.npz`` beside the model):
            ``report`` (default: loaded when the file exists; evaluations report the share of
            samples outside, energies are unchanged), ``penalty`` (the file must exist; inputs
            outside are invalid and get the penalty energy) or ``off``.
    """

    name = "learned"

    def __init__(self, checkpoint: str, tasks: list[str] | str | None = None,
                 directions: dict[str, str] | None = None, transforms: dict[str, Transform] | None = None,
                 transform: Transform | None = None, penalty: float = 10.0, name: str | None = None,
                 batch_size: int = 1024, device: str = "cpu", cache_size: int = 200_000,
                 standardize: bool = False, out_of_domain: str = "warn", max_z: float = 10.0,
                 domain_check: str = "report"):
        super().__init__(transform=None, penalty=penalty, name=name)
        if out_of_domain not in ("warn", "penalty"):
            raise ValueError(f"out_of_domain must be 'warn' or 'penalty', got {out_of_domain!r}")
        if domain_check not in ("report", "penalty", "off"):
            raise ValueError(f"domain_check must be 'report', 'penalty' or 'off', got {domain_check!r}")
        if not max_z > 0:
            raise ValueError(f"max_z must be > 0, got {max_z}")
        from lightning_modules.reward_model import load_reward_model, resolve_reward_checkpoint
        from oracles.domain import FILE, InputDomain

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.checkpoint = str(checkpoint)
        self.model = load_reward_model(checkpoint, map_location=device)
        available = list(self.model.hparams.tasks)
        tasks = [tasks] if isinstance(tasks, str) else list(tasks or available)
        unknown = [t for t in tasks if t not in available]
        if unknown or not tasks:
            raise ValueError(f"unknown task(s) {unknown} for {checkpoint}; the model predicts {available}")
        self.tasks, self.columns = tasks, [available.index(t) for t in tasks]
        directions = dict(directions or {})
        transforms = dict(transforms or {})
        for label, given in (("directions", directions), ("transforms", transforms)):
            extra = [t for t in given if t not in tasks]
            if extra:
                raise ValueError(f"{label} name task(s) {extra} that are not among the oracle's tasks {tasks}")
        bad = {t: d for t, d in directions.items() if d not in DIRECTIONS}
        if bad:
            raise ValueError(f"directions must be {DIRECTIONS}, got {bad}")
        self.directions = {t: directions.get(t, "maximize") for t in tasks}
        self.transforms = transforms
        self.shared_transform = transform
        self.batch_size = int(batch_size)
        self.cache_size = int(cache_size)
        regression = self.model.hparams.task == "regression"
        if standardize and not regression:
            raise ValueError(f"standardize needs a regression model; {checkpoint} is {self.model.hparams.task}")
        self.standardize, self.out_of_domain, self.max_z = bool(standardize), out_of_domain, float(max_z)
        self._mean = self.model.target_mean.cpu().numpy()[self.columns] if regression else None
        self._std = self.model.target_std.cpu().numpy()[self.columns] if regression else None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._outside_cache: OrderedDict[str, np.floating] = OrderedDict()  # input-domain verdicts (outside_domain)
        domain = self.model.domain
        self._canonical = canonicaliser(domain) if domain in ("smiles", "dna", "protein") else None
        self.domain_check = domain_check
        location = resolve_reward_checkpoint(checkpoint)
        self.input_domain = None if domain_check == "off" else InputDomain.load(location if location.is_dir() else location.parent)
        if domain_check == "penalty" and self.input_domain is None:
            raise ValueError(f"domain_check: penalty needs {FILE} beside the model in {location}; build it with "
                             "benchmarks/reward_domain.py (or use domain_check: report)")

    def outside_domain(self, sequences: Sequence[str]) -> np.ndarray | None:
        """[n] float: 1.0 outside the model's input domain, 0.0 inside, NaN for an input the domain
        cannot read (unparsable); None when the model has no domain. Independent of the oracle's
        penalties, so that shares compare across oracle settings."""
        if self.input_domain is None:
            return None
        keys = [s if isinstance(s, str) else "" for s in sequences]
        # each distinct input judged once, shared by the penalty and the report
        verdicts = _lru_lookup(self._outside_cache, keys, self.input_domain.outside_share, self.cache_size)
        return np.array([float(verdicts[key]) for key in keys], dtype=float)

    @property
    def names(self) -> list[str]:
        """One name per energy column, as ``EnergyVector`` has."""
        return [f"{self.name}/{t}" for t in self.tasks]

    @property
    def wild_type(self) -> str | None:
        """A reference input the model scores (the card's example), used by generic smoke checks."""
        return getattr(self.model, "card", {}).get("example_input")

    def energies_of(self, values: np.ndarray) -> np.ndarray:
        """Raw values [n, k] (task order of ``tasks``) → energies [n, k]."""
        out = np.empty_like(values)
        if self.standardize:
            values = (values - self._mean) / self._std
        for j, task in enumerate(self.tasks):
            transform = self.transforms.get(task, self.shared_transform)
            if transform is not None:
                out[:, j] = transform(values[:, j])
            else:
                out[:, j] = -values[:, j] if self.directions[task] == "maximize" else values[:, j]
        return out

    def predict_values(self, sequences: list[str]) -> np.ndarray:
        """Raw predictions [n, k] for the selected tasks, through the cache; NaN rows where invalid."""
        keys = [s if isinstance(s, str) else None for s in sequences]
        values = _lru_lookup(self._cache, [k for k in keys if k is not None], self._predict, self.cache_size)
        out = np.full((len(sequences), len(self.tasks)), np.nan)
        for i, key in enumerate(keys):
            if key is not None:
                out[i] = values[key]
        return out

    def _predict(self, sequences: list[str]) -> np.ndarray:
        """The model's predictions [n, k] for the selected tasks, uncached."""
        preds = self.model.predict(sequences, batch_size=self.batch_size)[:, self.columns]
        self._warn_out_of_domain(preds)
        return preds

    def far_from_training(self, values: np.ndarray) -> np.ndarray:
        """[n, k] bool: predictions more than ``max_z`` training standard deviations from the
        training mean (all False for classifiers, whose outputs are bounded)."""
        if self._mean is None:
            return np.zeros(values.shape, dtype=bool)
        return np.nan_to_num(np.abs((values - self._mean) / self._std), nan=0.0) > self.max_z

    def _warn_out_of_domain(self, preds: np.ndarray) -> None:
        """Say (once per oracle) when regression predictions lie far outside the training targets.

        Why: a reward model fed inputs unlike its training data does not fail, it returns numbers,
        and an aligner optimises them. reward-qm9 on MOSES-sized molecules predicts a median α of
        1.3e5 bohr³ (QM9: 6–197); ten training standard deviations catches that without flagging
        honest extrapolation. With ``out_of_domain: warn`` the values are still used: the warning
        says what to fix (a policy of the model's domain, a model of the policy's, or ``penalty``).
        """
        if getattr(self, "_warned_domain", False):
            return
        far = self.far_from_training(preds)
        if far.any():
            self._warned_domain = True
            shares = ", ".join(f"{t} {far[:, j].mean():.0%}" for j, t in enumerate(self.tasks) if far[:, j].any())
            what = ("they get the penalty energy" if self.out_of_domain == "penalty"
                    else "its values there are not rewards (out_of_domain: penalty scores them as invalid)")
            log.warning("%s: predictions more than %g training standard deviations from the training mean "
                        "(%s of this batch): the inputs are likely outside the reward model's domain, and %s",
                        self.checkpoint, self.max_z, shares, what)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()
        state["_outside_cache"] = OrderedDict()
        return state

    def __call__(self, sequences: Sequence[str]) -> Scores:
        batch = _check_batch(sequences)
        strings = [s if isinstance(s, str) else "" for s in batch]
        values = self.predict_values(strings)
        energies = self.energies_of(values)
        valid = np.isfinite(values).all(1) & np.isfinite(energies).all(1)
        if self.out_of_domain == "penalty":
            valid &= ~self.far_from_training(values).any(1)
        if self.domain_check == "penalty" and valid.any():
            valid &= ~(self.outside_domain(strings) == 1.0)
        energies = np.where(valid[:, None], energies, self.penalty)
        values = np.where(valid[:, None], values, np.nan)
        canonical = [self._canonical(s) if self._canonical and ok else (s if ok else None)
                     for s, ok in zip(strings, valid)]
        if len(self.tasks) == 1:
            energies = energies[:, 0]
        return Scores(torch.from_numpy(energies.astype(np.float64)), torch.from_numpy(valid),
                      {f"{self.name}/{t}": values[:, j] for j, t in enumerate(self.tasks)}, canonical)
