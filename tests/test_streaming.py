import logging

import numpy as np
import pytest
import torch

from datamodules.sources import DataFileError
from datamodules.streaming import (
    BatchStream,
    RecordFile,
    StreamingLoader,
    TokenizedCorpus,
    iterate_records,
    rank_batches,
)
from networks.tokenizers import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("smiles")


@pytest.fixture
def corpus(tok, smiles_file, tmp_path):
    return TokenizedCorpus.build(RecordFile(str(smiles_file(1003))), tok, cache_dir=tmp_path / "c")


def _epoch_records(corpus, tok, rank, world, epoch, workers, batch_size=16, skip=0):
    stream = BatchStream(corpus, batch_size, tok.pad_token_id, seed=7, rank=rank, world_size=world)
    calls = iter([epoch])
    loader = StreamingLoader(stream, num_workers=workers, epoch_fn=lambda: next(calls),
                             resume_fn=lambda: (epoch, skip))
    batches = list(loader)
    return iterate_records(corpus, batches), len(batches), len(loader)


def test_two_ranks_two_workers_cover_each_record_once_per_epoch(corpus, tok):
    n = len(corpus)
    assert n == 1003
    per_rank = [_epoch_records(corpus, tok, r, 2, epoch=0, workers=2) for r in range(2)]
    seen = per_rank[0][0] + per_rank[1][0]
    assert sorted(seen) == list(range(n))  # complete and disjoint
    # every rank yields the same number of batches (DDP ranks never wait on each other) = len()
    assert per_rank[0][1] == per_rank[1][1] == per_rank[0][2]
    # the next epoch visits the records in a different order, still exactly once
    nxt = _epoch_records(corpus, tok, 0, 2, epoch=1, workers=2)[0] + _epoch_records(corpus, tok, 1, 2, 1, 2)[0]
    assert sorted(nxt) == list(range(n)) and nxt != seen
    # the order is a pure function of (seed, epoch): workers do not change it
    assert _epoch_records(corpus, tok, 0, 2, epoch=0, workers=0)[0] == per_rank[0][0]


@pytest.mark.parametrize("skip", [1, 5, 30])
def test_resume_mid_epoch_yields_exactly_the_rest(corpus, tok, skip):
    full, n_batches, _ = _epoch_records(corpus, tok, 1, 2, epoch=3, workers=2)
    batch_plan = rank_batches(len(corpus), 16, 1, 2, 3, 7, True)
    done = sum(len(b) for b in batch_plan[:skip])
    rest, _, _ = _epoch_records(corpus, tok, 1, 2, epoch=3, workers=2, skip=skip)
    assert rest == full[done:]


def test_batches_are_padded_and_match_the_tokens(corpus, tok):
    stream = BatchStream(corpus, 8, tok.pad_token_id, shuffle=False)
    batch = next(iter(stream))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.dtype == torch.long and ids.shape == mask.shape
    for row, index in enumerate(batch["record_index"].tolist()):
        expected = corpus.token_ids(index)
        assert ids[row, : len(expected)].tolist() == expected.tolist()
        assert (ids[row, len(expected):] == tok.pad_token_id).all()
        assert mask[row].sum() == len(expected)


def test_garbage_lines_are_counted_and_logged(tok, smiles_file, tmp_path, caplog):
    path = smiles_file(100, extra=["not a smiles!", "", "CC[Xe]", "C" * 400])
    with caplog.at_level(logging.WARNING):
        corpus = TokenizedCorpus.build(RecordFile(str(path)), tok, max_tokens=200, cache_dir=tmp_path)
    assert len(corpus) == 100
    assert corpus.meta["n_invalid"] == 3 and corpus.meta["n_too_long"] == 1
    assert "skipped 3 invalid" in caplog.text and "CC[Xe]" in caplog.text


def test_limit_keeps_a_seeded_uniform_subset_of_an_ordered_file_not_its_prefix(tok, tmp_path):
    # An ordered file, as MOSES's test set is: 3,000 records of one kind, then 3,000 of another,
    # with an invalid line and a too-long one in between (never kept, never counted as usable).
    path = tmp_path / "ordered.smi"
    path.write_text("\n".join(["C" * (1 + i % 5) for i in range(3000)] + ["not a smiles!", "C" * 400]
                              + ["c1ccccc1" + "C" * (i % 5) for i in range(3000)]) + "\n")
    corpus = TokenizedCorpus.build(RecordFile(str(path), limit=500), tok, cache_dir=tmp_path / "c")
    assert len(corpus) == 500 and corpus.meta["n_usable"] == 6000 and corpus.meta["n_invalid"] == 1
    lines = np.load(corpus.directory / "line_numbers.npy")
    assert len(set(lines.tolist())) == 500  # distinct records
    second_half = int(np.sum(lines > 3001))
    assert 200 < second_half < 300  # both halves, ≈ 250 each (a prefix would give 0)
    # stored in random order: a prefix of the subset (limit_val_batches) spans the file too
    assert 30 < int(np.sum(lines[:100] > 3001)) < 70
    texts = [tok.decode(corpus.token_ids(i), skip_special_tokens=True).replace(" ", "") for i in range(len(corpus))]
    original = path.read_text().splitlines()
    assert texts == [original[i] for i in lines]  # the ids stored are those of the lines named
    # seeded: a rebuild in another cache gives the same subset; a limit above the file keeps all
    again = TokenizedCorpus.build(RecordFile(str(path), limit=500), tok, cache_dir=tmp_path / "d")
    assert np.array_equal(np.load(again.directory / "line_numbers.npy"), lines)
    assert len(TokenizedCorpus.build(RecordFile(str(path), limit=10**6), tok, cache_dir=tmp_path / "c")) == 6000


def test_reservoir_subset_does_not_depend_on_chunking():
    from datamodules.streaming import _Reservoir

    items = list(range(1000))
    subsets = []
    for cut in ([1000], [7] * 142 + [6], [100, 1, 899], [3, 997]):
        reservoir, start = _Reservoir(50), 0
        for size in cut:
            reservoir.offer([[i] for i in items[start:start + size]], items[start:start + size])
            start += size
        assert reservoir.n_seen == 1000
        subsets.append(reservoir.shuffled()[1])
    assert all(s == subsets[0] for s in subsets) and len(set(subsets[0])) == 50
    assert max(subsets[0]) > 500  # not a prefix
    with pytest.raises(ValueError, match="limit must be at least 1"):
        RecordFile("x.smi", limit=0)


def test_dna_with_n_is_reported(tmp_path, caplog):
    path = tmp_path / "dna.txt"
    path.write_text("ACGTACGT\nACGNACGT\nTTTT\n")
    with caplog.at_level(logging.WARNING):
        corpus = TokenizedCorpus.build(RecordFile(str(path)), load_tokenizer("dna-k4"), cache_dir=tmp_path)
    assert len(corpus) == 2 and corpus.meta["n_invalid"] == 1
    assert "ACGNACGT" in caplog.text
    only_bad = tmp_path / "bad.txt"
    only_bad.write_text("NNNN\nACGN\n")
    with pytest.raises(DataFileError, match="none of 2 records is usable"):
        TokenizedCorpus.build(RecordFile(str(only_bad)), load_tokenizer("dna"), cache_dir=tmp_path)


def test_missing_file_and_column_errors(tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="data file not found"):
        TokenizedCorpus.build(RecordFile(str(tmp_path / "nope.smi")), tok, cache_dir=tmp_path)
    csv = tmp_path / "mols.csv"
    csv.write_text("smiles,y\nCCO,1\n")
    with pytest.raises(DataFileError, match=r"no column \['SMILES'\]; columns are \['smiles', 'y'\]"):
        TokenizedCorpus.build(RecordFile(str(csv), "SMILES"), tok, cache_dir=tmp_path)


def test_interrupted_build_leaves_no_complete_looking_cache(tok, smiles_file, tmp_path, monkeypatch):
    path = smiles_file(50)
    calls = {"n": 0}
    original = np.save

    def failing_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return original(*args, **kwargs)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        TokenizedCorpus.build(RecordFile(str(path)), tok, cache_dir=tmp_path / "c")
    assert not list((tmp_path / "c").iterdir())  # no entry, not even a partial one
    monkeypatch.setattr(np, "save", original)
    corpus = TokenizedCorpus.build(RecordFile(str(path)), tok, cache_dir=tmp_path / "c")
    assert len(corpus) == 50


def test_cache_is_reused_and_invalidated_by_file_change(tok, smiles_file, tmp_path):
    path = smiles_file(20)
    first = TokenizedCorpus.build(RecordFile(str(path)), tok, cache_dir=tmp_path / "c")
    assert TokenizedCorpus.build(RecordFile(str(path)), tok, cache_dir=tmp_path / "c").directory == first.directory
    path.write_text("CCO\nCCN\n")
    changed = TokenizedCorpus.build(RecordFile(str(path)), tok, cache_dir=tmp_path / "c")
    assert changed.directory != first.directory and len(changed) == 2


def test_csv_filters(tmp_path):
    path = tmp_path / "dna.tsv"
    path.write_text("sequence\tchr\nACGT\tchr1\nAAAA\tchr7\nCCCC\tchrX\nGGGG\tchr2\n")
    tok = load_tokenizer("dna")
    train = TokenizedCorpus.build(RecordFile(str(path), "sequence", exclude={"chr": ["chr7", "chrX"]}), tok,
                                  cache_dir=tmp_path)
    val = TokenizedCorpus.build(RecordFile(str(path), "sequence", where={"chr": ["chr7"]}), tok, cache_dir=tmp_path)
    decode = lambda c: [tok.decode(c.token_ids(i), skip_special_tokens=True) for i in range(len(c))]  # noqa
    assert decode(train) == ["ACGT", "GGGG"] and decode(val) == ["AAAA"]


def test_dhs_datamodule_uses_the_files_chromosome_split():
    from datamodules import DHSDataModule

    data = DHSDataModule(batch_size=64, val_limit=None)
    data.setup()
    sizes = {stage: len(corpus) for stage, corpus in data.corpora.items()}
    assert sizes == {"train": 39_254, "val": 4_053, "test": 4_565}
    batch = next(iter(data.val_dataloader()))
    assert batch["input_ids"].shape == (64, 52)  # 200 bp = 50 4-mers + <bos>/<eos>


def test_mpra_reader_on_a_synthetic_table(tmp_path):
    from datamodules import MPRADataModule

    rng = np.random.default_rng(0)
    chroms = ["1", "7", "13", "19", "21", "X", "2"] * 5
    lines = ["IDs\tchr\tsequence\tK562_log2FC\tHepG2_log2FC\tSKNSH_log2FC"]
    for i, chrom in enumerate(chroms):
        seq = "".join(rng.choice(list("ACGT"), 200))
        lines.append(f"seq{i}\t{chrom}\t{seq}\t0.1\t0.2\t0.3")
    lines.append("bad\t1\tACGTNNACGT\t0\t0\t0")
    path = tmp_path / "mpra.tsv"
    path.write_text("\n".join(lines) + "\n")
    data = MPRADataModule(str(path), batch_size=4)
    data.setup()
    sizes = {stage: len(corpus) for stage, corpus in data.corpora.items()}
    assert sizes == {"train": 10, "val": 15, "test": 10}  # chr1+chr2 train; 19/21/X val; 7/13 test
    assert data.corpora["train"].meta["n_invalid"] == 1


def test_no_rank_gets_an_empty_batch():
    for n, batch, world in [(5, 1, 2), (7, 3, 4), (2, 8, 2), (101, 16, 2)]:
        plans = [rank_batches(n, batch, r, world, 0, 0, True) for r in range(world)]
        assert len({len(p) for p in plans}) == 1
        assert all(len(b) > 0 for p in plans for b in p)
        assert sorted(int(i) for p in plans for b in p for i in b) == list(range(n))
    with pytest.raises(ValueError, match="cannot be shared"):
        rank_batches(1, 4, 0, 2, 0, 0, True)


@pytest.mark.parametrize("kind", ["sequences", "pairs"])
def test_a_restored_position_is_used_once_and_changed_settings_are_named(kind, caplog):
    """Both streaming DataModules restore through ResumableStreamMixin: the position is handed to
    the next training loader once, and a setting that reorders the batches is named in a warning."""
    from datamodules.scored_pairs import ScoredPairsDataModule
    from datamodules.sequences import SequenceDataModule

    if kind == "sequences":
        dm, setting = SequenceDataModule(batch_size=8, seed=1), "batch_size"
    else:
        dm, setting = ScoredPairsDataModule("unused.csv", pairs_per_batch=8, seed=1), "pairs_per_batch"
        dm.set_pairs(np.array([0, 1, 2]), np.array([1, 2, 0]))
    assert dm.state_dict() == {}  # no trainer: no position to save
    same = {"epoch": 2, "batches_done": 5, **dm._stream_settings()}
    with caplog.at_level(logging.WARNING):
        dm.load_state_dict(same)
    assert not caplog.records
    assert dm._take_resume() == (2, 5) and dm._take_resume() is None
    with caplog.at_level(logging.WARNING):
        dm.load_state_dict({**same, setting: 16})
    assert len(caplog.records) == 1 and f"{setting}=8" in caplog.text and "used 16" in caplog.text
    assert dm._take_resume() == (2, 5)


def test_length_grouped_batches_cover_each_record_once_with_less_padding():
    """group_by_length keeps an epoch's contract (every record once, the same batch count and sizes
    on every rank, a pure function of (seed, epoch)) and cuts the padding of skewed lengths."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 100, size=1003)
    n, batch, world = len(lengths), 16, 2

    def plans(group, epoch=0):
        return [rank_batches(n, batch, r, world, epoch, 7, True, lengths, group) for r in range(world)]

    def padded_tokens(plan):
        return sum(len(b) * int(lengths[b].max()) for b in plan)

    grouped, plain = plans(20), plans(0)
    for g, p in zip(grouped, plain):
        assert sorted(len(b) for b in g) == sorted(len(b) for b in p)
        assert sorted(np.concatenate(g).tolist()) == sorted(np.concatenate(p).tolist())  # same share
    assert sorted(int(i) for p in grouped for b in p for i in b) == list(range(n))
    real = int(lengths.sum())
    assert padded_tokens(plain[0] + plain[1]) > 1.5 * real
    assert padded_tokens(grouped[0] + grouped[1]) < 1.1 * real
    # not one long sorted run: the batches come in a random order, each of similar lengths
    widths = [int(lengths[b].max()) for b in grouped[0]]
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)
    again = plans(20)
    assert all(np.array_equal(a, b) for p, q in zip(grouped, again) for a, b in zip(p, q))
    assert not all(np.array_equal(a, b) for a, b in zip(grouped[0], plans(20, epoch=1)[0]))
    with pytest.raises(ValueError, match="one length per record"):
        rank_batches(n, batch, 0, world, 0, 7, True, None, 20)
    with pytest.raises(ValueError, match=">= 0"):
        rank_batches(n, batch, 0, world, 0, 7, True, lengths, -1)
    # unshuffled (validation) streams ignore it
    assert all(np.array_equal(a, b) for a, b in zip(rank_batches(n, batch, 0, 1, 0, 7, False, lengths, 20),
                                                     rank_batches(n, batch, 0, 1, 0, 7, False)))


@pytest.mark.parametrize("skip", [1, 7])
def test_length_grouped_stream_resumes_mid_epoch_exactly(corpus, tok, skip):
    def records(skip_):
        stream = BatchStream(corpus, 16, tok.pad_token_id, seed=7, rank=0, world_size=1, group_by_length=4)
        loader = StreamingLoader(stream, num_workers=2, epoch_fn=lambda: 2, resume_fn=lambda: (2, skip_))
        return [b["record_index"].tolist() for b in loader]

    full = records(0)
    assert records(skip) == full[skip:]
    assert sorted(i for b in full for i in b) == list(range(len(corpus)))


def test_sequence_datamodule_rejects_a_negative_grouping_and_names_it_for_resumes():
    from datamodules.sequences import SequenceDataModule

    with pytest.raises(ValueError, match="group_by_length"):
        SequenceDataModule(group_by_length=-1)
    assert SequenceDataModule(group_by_length=50)._stream_settings()["group_by_length"] == 50


def test_extended_chembl_split_is_disjoint_fixed_and_private_only_if_the_umask_says(tmp_path):
    """split: extended adds 90,000 validation SMILES to the 50k training subset and holds out the
    other 10,000; the files are the same on every call and honour the umask."""
    import os

    from datamodules.sequences import ChemblDataModule
    from datamodules.sources import chembl_extended_split, chembl_path, read_records

    old = os.umask(0o027)
    try:
        paths = chembl_extended_split(tmp_path / "a")
    finally:
        os.umask(old)
    train, holdout = (list(read_records(paths[k])) for k in ("train", "holdout"))
    assert len(train) == 140_000 and len(holdout) == 10_000
    assert not set(train) & set(holdout)
    valid = set(read_records(chembl_path("valid")))
    assert set(holdout) <= valid and set(read_records(chembl_path("train"))) <= set(train)
    assert all(oct(paths[k].stat().st_mode & 0o777) == oct(0o640) for k in paths)
    again = chembl_extended_split(tmp_path / "b")  # made again elsewhere: the same records
    assert list(read_records(again["holdout"])) == holdout
    dm = ChemblDataModule(split="extended", cache_dir=str(tmp_path / "c"))
    assert list(read_records(dm.record_file("val").path)) == holdout
    assert len(list(read_records(dm.record_file("train").path))) == 140_000
    with pytest.raises(ValueError, match="mini"):
        ChemblDataModule(split="full")
    with pytest.raises(ValueError, match="own files"):
        ChemblDataModule(split="extended", train="x.smi", cache_dir=str(tmp_path / "c"))
