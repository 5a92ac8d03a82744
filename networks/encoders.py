"""Encoders for reward models: sequence strings → feature vectors, each named in YAML.

:class:`FingerprintMLP` (RDKit Morgan count or bit fingerprints plus atom/bond counts → MLP;
features computed once per distinct SMILES and cached), :class:`DNAConvNet` (one-hot DNA → 1-D
CNN), :class:`PooledLM` (hidden states of any ``networks.architectures`` model, mean-pooled).
Used by ``lightning_modules.reward_model.RewardModelModule``.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from networks.configurable import Configurable


class Encoder(Configurable, nn.Module):
    """Sequence strings → feature vectors ``[n, out_dim]``.

    ``featurize`` turns valid strings into a CPU tensor (or tuple of tensors) and is the only
    place that knows the input format; ``forward`` is differentiable. Like the architectures in
    ``networks.architectures``, an encoder is stored in checkpoints as plain data
    (``to_config``/``from_config``) so checkpoints load with ``weights_only=True``.
    """

    domain = "any"  # what sequences it reads: smiles, dna, protein, any
    out_dim: int
    init_args: dict

    def bind(self, tokenizer: str | None) -> None:
        """Called once by the module with its tokenizer spec (encoders that need one build here)."""

    def featurize(self, sequences: list[str]):
        raise NotImplementedError


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


#: Elements counted explicitly (the rest are "other"); hydrogens include implicit ones.
COUNTED_ELEMENTS = ("H", "C", "N", "O", "F", "S", "Cl", "Br", "P")


class FingerprintMLP(Encoder):
    """Morgan fingerprint (+ composition counts) → MLP, for molecules.

    Why counts: extensive properties (U0, polarizability) grow with the number of atoms and
    bonds; a bit vector cannot say "six carbons", a count vector can. ``composition`` appends
    the element counts (hydrogens included), heavy-atom, bond-type and ring counts, scaled by
    ``composition_scale`` so they enter on the same order as fingerprint counts.

    Args:
        radius, n_bits: Morgan fingerprint settings.
        counts: count fingerprint (True) or bit fingerprint (False).
        composition: append atom/bond/ring counts.
        hidden: MLP layer widths.
        dropout: dropout after each hidden layer.
        linear_composition: also pass the composition counts straight to the output, so that a
            linear head can represent the additive (extensive) part of a property exactly and
            the MLP only has to learn the rest — U0 is ≈ a sum of per-atom energies, which an
            MLP through ReLUs fits only to a few Hartree.
        heavy_atoms: include the heavy-atom count among the composition counts. It is the sum of
            the element counts (all but H, plus "other") for every molecule without dummy atoms,
            so with ``linear_composition`` a head can put any weight on it and the opposite on
            each element: the first reward-qm9 did (±1.1e5), and its float32 predictions then
            moved by up to 0.19 σ with the batch they were computed in. Set it false for new
            models (``RewardModelModule`` warns when a fresh fit has both); the default, true,
            reads checkpoints made before the option existed.
        cache_size: featurised molecules kept in memory (distinct SMILES strings).
    """

    domain = "smiles"

    def __init__(self, radius: int = 2, n_bits: int = 2048, counts: bool = True, composition: bool = True,
                 hidden: list[int] = [512, 256], dropout: float = 0.1, composition_scale: float = 0.1,
                 linear_composition: bool = False, heavy_atoms: bool = True, cache_size: int = 500_000):
        super().__init__()
        if linear_composition and not composition:
            raise ValueError("linear_composition needs composition: true")
        self.init_args = dict(radius=radius, n_bits=n_bits, counts=counts, composition=composition,
                              hidden=list(hidden), dropout=dropout, composition_scale=composition_scale,
                              linear_composition=linear_composition, heavy_atoms=heavy_atoms)
        self.linear_composition, self.heavy_atoms = linear_composition, heavy_atoms
        self.n_composition = len(COUNTED_ELEMENTS) + 6 + int(heavy_atoms) if composition else 0
        self.radius, self.n_bits, self.counts, self.composition = radius, n_bits, counts, composition
        self.composition_scale = composition_scale
        self.n_features = n_bits + self.n_composition
        self.mlp = _mlp([self.n_features, *hidden], dropout)
        self.out_dim = (hidden[-1] if hidden else self.n_features) + (self.n_composition if linear_composition else 0)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._generator = None

    def _sparse(self, smiles: str) -> tuple[np.ndarray, np.ndarray]:
        from rdkit import Chem
        from rdkit.Chem import rdFingerprintGenerator

        mol = Chem.MolFromSmiles(smiles)
        if mol is None or mol.GetNumAtoms() == 0:
            raise ValueError(f"invalid SMILES {smiles!r} reached the encoder (filter with is_valid first)")
        if self._generator is None:
            self._generator = rdFingerprintGenerator.GetMorganGenerator(radius=self.radius, fpSize=self.n_bits)
        fp = (self._generator.GetCountFingerprintAsNumPy(mol) if self.counts
              else self._generator.GetFingerprintAsNumPy(mol))
        idx = np.flatnonzero(fp).astype(np.int64)
        val = fp[idx].astype(np.float32)
        if self.composition:
            extra = self._composition(mol, self.heavy_atoms) * self.composition_scale
            nz = np.flatnonzero(extra)
            idx = np.concatenate([idx, self.n_bits + nz])
            val = np.concatenate([val, extra[nz].astype(np.float32)])
        return idx, val

    @staticmethod
    def _composition(mol, heavy_atoms: bool = True) -> np.ndarray:
        """Counts of H (implicit included), C … P, other elements, [heavy atoms,] single, aromatic,
        double and triple bonds, and rings."""
        counts = dict.fromkeys(COUNTED_ELEMENTS, 0)
        other = 0
        for atom in mol.GetAtoms():
            symbol = atom.GetSymbol()
            if symbol in counts:
                counts[symbol] += 1
            else:
                other += 1
            counts["H"] += atom.GetTotalNumHs()
        bonds = {1.0: 0, 1.5: 0, 2.0: 0, 3.0: 0}
        for bond in mol.GetBonds():
            order = bond.GetBondTypeAsDouble()
            if order in bonds:
                bonds[order] += 1
        ring_info = mol.GetRingInfo()
        heavy = [mol.GetNumHeavyAtoms()] if heavy_atoms else []
        return np.array([*counts.values(), other, *heavy, *bonds.values(), ring_info.NumRings()], dtype=np.float64)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"], state["_generator"] = OrderedDict(), None
        return state

    def featurize(self, sequences: list[str]) -> torch.Tensor:
        """Dense float32 [n, n_features]; each distinct SMILES is computed once and cached sparse."""
        out = torch.zeros(len(sequences), self.n_features)
        for row, smiles in enumerate(sequences):
            entry = self._cache.get(smiles)
            if entry is None:
                entry = self._sparse(smiles)
                self._cache[smiles] = entry
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            idx, val = entry
            out[row, torch.from_numpy(idx)] = torch.from_numpy(val)
        return out

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = self.mlp(features)
        if self.linear_composition:
            # unscaled counts: a weight of ~1 per atom (U0: ~1 standard deviation per carbon) is
            # reached in a few hundred Adam steps, a weight of ~10 would take thousands
            h = torch.cat([h, features[:, self.n_bits:] / self.composition_scale], dim=1)
        return h


_ONE_HOT = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate("ACGT"):
    _ONE_HOT[ord(_c)] = _i


def one_hot_dna(sequences: list[str]) -> torch.Tensor:
    """float32 [n, 4, L] (L = longest; shorter sequences are zero-padded at the end)."""
    length = max(len(s) for s in sequences)
    codes = np.full((len(sequences), length), -1, dtype=np.int64)
    for i, s in enumerate(sequences):
        codes[i, : len(s)] = _ONE_HOT[np.frombuffer(s.encode("ascii"), dtype=np.uint8)]
    out = np.zeros((len(sequences), 4, length), dtype=np.float32)
    rows, cols = np.nonzero(codes >= 0)
    out[rows, codes[rows, cols], cols] = 1.0
    return torch.from_numpy(out)


class DNAConvNet(Encoder):
    """One-hot DNA → convolution blocks → global max- and mean-pooling.

    Why this shape: regulatory activity is mostly carried by short motifs (first layer, width
    ``kernel_size`` ≈ a transcription-factor site) and their combinations (later layers);
    global pooling makes the output independent of where in the 200 bp the motif sits.

    Args:
        channels: filters per convolution layer.
        kernel_sizes: width of each layer's filters.
        pool: max-pool width after every layer but the last.
        dropout: dropout after each block.
    """

    domain = "dna"

    def __init__(self, channels: list[int] = [128, 128, 128], kernel_sizes: list[int] = [15, 5, 5],
                 pool: int = 4, dropout: float = 0.2):
        super().__init__()
        if len(channels) != len(kernel_sizes) or not channels:
            raise ValueError("channels and kernel_sizes need the same, non-zero length")
        self.init_args = dict(channels=list(channels), kernel_sizes=list(kernel_sizes), pool=pool, dropout=dropout)
        blocks: list[nn.Module] = []
        width = 4
        for i, (c, k) in enumerate(zip(channels, kernel_sizes)):
            blocks += [nn.Conv1d(width, c, k, padding=k // 2), nn.BatchNorm1d(c), nn.ReLU()]
            if i < len(channels) - 1:
                blocks.append(nn.MaxPool1d(pool, ceil_mode=True))
            blocks.append(nn.Dropout(dropout))
            width = c
        self.net = nn.Sequential(*blocks)
        self.out_dim = 2 * width

    def featurize(self, sequences: list[str]) -> torch.Tensor:
        return one_hot_dna(sequences)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(x)
        return torch.cat([h.amax(-1), h.mean(-1)], dim=1)


class PooledLM(Encoder):
    """Hidden states of a sequence language model, pooled over real tokens.

    Args:
        architecture: any ``networks.architectures`` config, typically
            ``{class_path: networks.architectures.Pretrained, init_args: {path: molgpt-moses}}``.
        pool: ``mean`` over tokens or ``last`` (the final real token, natural for a causal LM).
        freeze: keep the language model fixed and train only the heads.
    A masked LM (ESM) is named as ``Pretrained(path, masked_lm: true)``.
    """

    def __init__(self, architecture: dict, pool: str = "mean", freeze: bool = False):
        super().__init__()
        from networks.architectures import Architecture

        if pool not in ("mean", "last"):
            raise ValueError(f"pool must be mean or last, got {pool!r}")
        self.architecture = Architecture.from_config(architecture)
        self.init_args = dict(architecture=self.architecture.to_config(), pool=pool, freeze=freeze)
        self.pool, self.freeze = pool, freeze
        self.model = None
        self.tokenizer = None

    def bind(self, tokenizer: str | None) -> None:
        from networks.architectures import check_vocab
        from networks.tokenizers import load_tokenizer

        if tokenizer is None:
            raise ValueError("PooledLM needs the module's tokenizer")
        self.tokenizer = load_tokenizer(tokenizer)
        self.model = self.architecture.build(self.tokenizer)
        check_vocab(self.model, self.tokenizer)
        self.out_dim = self.model.config.hidden_size
        if self.freeze:
            self.model.requires_grad_(False)

    def featurize(self, sequences: list[str]):
        from networks.tokenizers import encode_checked

        ids = encode_checked(self.tokenizer, sequences)
        length = max(len(i) for i in ids)
        input_ids = torch.full((len(ids), length), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), length), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        return input_ids, mask

    def forward(self, features) -> torch.Tensor:
        input_ids, mask = features
        hidden = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        if self.pool == "last":
            return hidden[torch.arange(hidden.size(0), device=hidden.device), mask.sum(1) - 1]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
