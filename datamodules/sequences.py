"""DataModules that stream sequences for causal-LM pretraining.

:class:`SequenceDataModule` does the work (tokenise once on each node's rank 0, stream sharded
batches, save and restore the position inside an epoch); the subclasses only say where their
records live: MOSES (from the ``molsets`` wheel), ChEMBL v31 (shipped), any SMILES file, the
ENCODE cell-type DHS set (shipped) and an MPRA table from a user path.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import lightning as L

from datamodules.sources import chembl_extended_split, chembl_path, dhs_path, moses_path
from datamodules.streaming import (BatchStream, RecordFile, ResumableStreamMixin,
                                   StreamingLoader, TokenizedCorpus, check_randomized, check_transform)
from networks.tokenizers import load_tokenizer

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")


class SequenceDataModule(ResumableStreamMixin, L.LightningDataModule):
    """Streams tokenised batches of ``train``/``val``/``test`` record files.

    Args:
        tokenizer: a named tokenizer (``smiles``, ``dna``, ``dna-k4``, ``protein``) or a model
            directory; normally linked from the model's own ``tokenizer`` by ``main.py``.
        batch_size: records per training batch on each rank.
        val_batch_size: records per validation batch (default: ``batch_size``).
        num_workers: DataLoader workers per rank.
        max_tokens: records with more tokens (special tokens included) are skipped and counted.
        seed: shuffling seed; epoch ``e`` uses the permutation seeded by ``(seed, e)``.
        val_limit: validate on a fixed, uniformly random ``val_limit`` of the validation
            records (quick validation on CPU); not the first ones, as files are often ordered.
        cache_dir: where tokenised corpora are cached (default ``$REWARDFIT_CACHE`` or
            ``~/.cache/rewardfit``).
        group_by_length: ``g > 0`` batches training records of similar length together (sorted
            within windows of ``g × batch_size`` shuffled records, batches dealt in random
            order), so batches carry little padding: ≈ 1.9× fewer padded tokens on ChEMBL at
            ``g = 50``. 0 (default) keeps uniformly random batches. The loss is still a mean over
            each batch's tokens, so short records weigh a little more per token than in random
            batches.
        transform: rewrite every record (train, val and test) before tokenising, by name:
            ``fresh_ring_labels`` gives each SMILES ring bond a label of its own
            (:mod:`networks.ring_labels`; the same molecules, renumbered). Records it cannot
            rewrite are counted invalid and skipped.
        randomized: SMILES enumeration of the *training* split: each training molecule is
            replaced by this many randomized SMILES of it (RDKit, seeded by ``seed``; e.g. 10 turns
            ChEMBL's 140k training strings into 1.4M), validation and test stay as written. Data
            augmentation against overfitting a small set; the model then samples randomized
            SMILES, which every metric here canonicalises. 0 (default): off.
    """

    def __init__(self, tokenizer: str = "smiles", batch_size: int = 128,
                 val_batch_size: int | None = None, num_workers: int = 0, max_tokens: int = 200,
                 seed: int = 0, val_limit: int | None = None, cache_dir: str | None = None,
                 group_by_length: int = 0, transform: str | None = None, randomized: int = 0):
        super().__init__()
        if group_by_length < 0:
            raise ValueError(f"group_by_length must be >= 0, got {group_by_length}")
        self.randomized = check_randomized(randomized)  # at configuration, not at the first setup
        self.transform = check_transform(transform)
        self.group_by_length = group_by_length
        self.tokenizer_spec = tokenizer
        self.tokenizer = load_tokenizer(tokenizer)
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.max_tokens = max_tokens
        self.seed = seed
        self.val_limit = val_limit
        self.cache_dir = cache_dir
        self.corpora: dict[str, TokenizedCorpus] = {}

    # -- where the records are: subclasses override -------------------------------------
    def record_file(self, stage: str) -> RecordFile | None:
        raise NotImplementedError

    # -- Lightning hooks ---------------------------------------------------------------
    def _sources(self) -> dict[str, RecordFile]:
        sources = {s: self.record_file(s) for s in STAGES}
        if sources["train"] is None:
            raise ValueError(f"{type(self).__name__} has no training data")
        if self.randomized:
            sources["train"] = dataclasses.replace(sources["train"], randomized=self.randomized,
                                                   randomized_seed=self.seed)
        return {s: f if self.transform is None else dataclasses.replace(f, transform=self.transform)
                for s, f in sources.items() if f is not None}

    def _build(self, stage: str, source: RecordFile) -> TokenizedCorpus:
        return TokenizedCorpus.build(source, self.tokenizer, self.max_tokens, self.cache_dir)

    def prepare_data(self) -> None:
        for stage, source in self._sources().items():
            self._build(stage, source)

    def setup(self, stage: str | None = None) -> None:
        for name, source in self._sources().items():
            if name not in self.corpora:
                corpus = self._build(name, source)  # a cache hit after prepare_data
                self.corpora[name] = corpus
                meta = corpus.meta
                subset = (f", a uniform subset of {meta['n_usable']} usable"
                          if meta.get("n_usable", meta["n_records"]) > meta["n_records"] else "")
                log.info("%s %s: %d records%s (%d invalid, %d too long skipped)", type(self).__name__,
                         name, meta["n_records"], subset, meta["n_invalid"], meta["n_too_long"])

    def _stream(self, stage: str, batch_size: int, shuffle: bool) -> BatchStream:
        if stage not in self.corpora:
            self.setup(stage)
        if stage not in self.corpora:
            raise ValueError(f"{type(self).__name__} has no {stage} data")
        rank, world = self._rank()
        return BatchStream(self.corpora[stage], batch_size, self.tokenizer.pad_token_id, self.seed,
                           shuffle, rank, world, self.group_by_length if shuffle else 0)

    def train_dataloader(self) -> StreamingLoader:
        return self._train_loader(self._stream("train", self.batch_size, shuffle=True))

    def val_dataloader(self) -> StreamingLoader:
        return StreamingLoader(self._stream("val", self.val_batch_size, shuffle=False), self.num_workers)

    def test_dataloader(self) -> StreamingLoader:
        return StreamingLoader(self._stream("test", self.val_batch_size, shuffle=False), self.num_workers)

    def predict_dataloader(self) -> StreamingLoader:
        """Predict on the test split if there is one, else validation."""
        stage = "test" if self.record_file("test") is not None else "val"
        return StreamingLoader(self._stream(stage, self.val_batch_size, shuffle=False), self.num_workers)

    def _stream_settings(self) -> dict:
        return {"seed": self.seed, "batch_size": self.batch_size, "world_size": self._rank()[1],
                "group_by_length": self.group_by_length}


def _user_or(path: str | None, default: Path | None) -> str | None:
    if path is not None:
        return str(Path(path).expanduser())
    return None if default is None else str(default)


class SmilesFileDataModule(SequenceDataModule):
    """Any SMILES files: ``.smi``/``.txt`` (one per line) or ``.csv``/``.tsv`` with ``column``."""

    def __init__(self, train: str, val: str | None = None, test: str | None = None,
                 column: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.paths = {"train": train, "val": val, "test": test}
        self.column = column

    def record_file(self, stage: str) -> RecordFile | None:
        path = self.paths[stage]
        if path is None:
            return None
        limit = self.val_limit if stage != "train" else None
        return RecordFile(str(Path(path).expanduser()), self.column, limit=limit)


class MosesDataModule(SequenceDataModule):
    """MOSES (1.58M train / 176k test / 176k scaffold-test SMILES) from the ``molsets`` wheel.

    ``data_dir`` points at a directory with ``train.csv(.gz)``, ``test.csv(.gz)`` and
    ``test_scaffolds.csv(.gz)`` instead. Validation uses the MOSES test split;
    ``test_split`` picks ``test`` or ``test_scaffolds`` for ``trainer.test``.
    """

    def __init__(self, data_dir: str | None = None, test_split: str = "test_scaffolds", **kwargs):
        super().__init__(**kwargs)
        self.data_dir = data_dir
        self.test_split = test_split

    def _path(self, split: str) -> str:
        if self.data_dir is None:
            return str(moses_path(split))
        for name in (f"{split}.csv.gz", f"{split}.csv"):
            candidate = Path(self.data_dir).expanduser() / name
            if candidate.is_file():
                return str(candidate)
        raise FileNotFoundError(f"no {split}.csv(.gz) in MOSES data_dir {self.data_dir}")

    def record_file(self, stage: str) -> RecordFile:
        split = {"train": "train", "val": "test", "test": self.test_split}[stage]
        return RecordFile(self._path(split), "SMILES", limit=None if stage == "train" else self.val_limit)


class ChemblDataModule(SequenceDataModule):
    """ChEMBL v31 SMILES: the shipped 50k training subset and 100k validation set by default;
    ``train``/``val`` take user files instead (e.g. GuacaMol's ``.smiles`` files).

    ``split: extended`` trains on the 50k subset plus 90,000 of the validation SMILES and
    validates on the other 10,000 (:func:`~datamodules.sources.chembl_extended_split`; evaluate
    with ``benchmarks/sample_quality.py --data chembl-extended``)."""

    def __init__(self, train: str | None = None, val: str | None = None, split: str = "mini", **kwargs):
        super().__init__(**kwargs)
        if split not in ("mini", "extended"):
            raise ValueError(f"ChEMBL split must be 'mini' (the shipped 50k) or 'extended', got {split!r}")
        if split == "extended" and (train or val):
            raise ValueError("split: extended names its own files; give train/val only with split: mini")
        self.split = split
        self.train_path = _user_or(train, chembl_path("train"))
        self.val_path = _user_or(val, chembl_path("valid") if train is None else None)

    def record_file(self, stage: str) -> RecordFile | None:
        if self.split == "extended" and stage in ("train", "val"):
            # written on first use (not when a config is merely instantiated), then cached
            paths = chembl_extended_split(None if self.cache_dir is None else Path(self.cache_dir) / "chembl_splits")
            return RecordFile(str(paths["train"])) if stage == "train" else RecordFile(str(paths["holdout"]))
        if stage == "train":
            return RecordFile(self.train_path)
        if stage == "val" and self.val_path:
            return RecordFile(self.val_path, limit=self.val_limit)
        return None


class DHSDataModule(SequenceDataModule):
    """ENCODE cell-type-specific DNase hypersensitive sites, 200 bp (shipped).

    Splits follow the file's ``data_label``: training, validation (chr1), test (chr2).
    ``cell_types`` keeps only sites selected for those cell types (``TAG`` column).
    """

    SPLITS = {"train": "training", "val": "validation", "test": "test"}

    def __init__(self, path: str | None = None, cell_types: list[str] | None = None,
                 tokenizer: str = "dna-k4", **kwargs):
        super().__init__(tokenizer=tokenizer, **kwargs)
        self.path = _user_or(path, dhs_path())
        self.cell_types = cell_types

    def record_file(self, stage: str) -> RecordFile:
        where = {"data_label": self.SPLITS[stage]}
        if self.cell_types:
            where["TAG"] = list(self.cell_types)
        return RecordFile(self.path, "sequence", where, limit=None if stage == "train" else self.val_limit)


class MPRADataModule(SequenceDataModule):
    """The MPRA table of Gosai et al. (Nature 2024) from a user path (not obtainable offline).

    Split by chromosome as is usual for it: test = ``test_chromosomes`` (7, 13), validation =
    ``val_chromosomes`` (19, 21, X), training = the rest.
    """

    def __init__(self, path: str, sequence_column: str = "sequence", chromosome_column: str = "chr",
                 val_chromosomes: list[str] = ["19", "21", "X"],
                 test_chromosomes: list[str] = ["7", "13"], tokenizer: str = "dna-k4", **kwargs):
        super().__init__(tokenizer=tokenizer, **kwargs)
        self.path = str(Path(path).expanduser())
        self.sequence_column = sequence_column
        self.chromosome_column = chromosome_column
        self.val_chromosomes = [str(c) for c in val_chromosomes]
        self.test_chromosomes = [str(c) for c in test_chromosomes]

    def record_file(self, stage: str) -> RecordFile:
        col = self.chromosome_column
        held_out = self.val_chromosomes + self.test_chromosomes
        variants = lambda chroms: chroms + [f"chr{c}" for c in chroms]  # noqa: E731
        if stage == "train":
            return RecordFile(self.path, self.sequence_column, exclude={col: variants(held_out)})
        chroms = self.val_chromosomes if stage == "val" else self.test_chromosomes
        return RecordFile(self.path, self.sequence_column, {col: variants(chroms)}, limit=self.val_limit)
