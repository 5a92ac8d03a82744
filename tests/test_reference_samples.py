"""datamodules.ReferenceSamples: the reference's scored samples, made once, reused while the
settings match, refused when they do not, never left half-written."""

import json

import numpy as np
import pandas as pd
import pytest
import pyarrow.parquet as pq
import torch

from datamodules.reference_samples import SETTINGS_KEY, ReferenceSamples
from networks.architectures import GPT
from networks.tokenizers import load_tokenizer
from toy_oracles import Length

SETTINGS = {"policy": {"class_path": "GPT"}, "tokenizer": "smiles", "num_samples": 12, "top_k": None,
            "temperature": 1.0, "max_new_tokens": 10, "seed": 3, "oracle": {"class": "Length"}}


def _score(texts):
    scores = Length()(texts)
    return scores.energies.numpy(), scores.valid.numpy(), scores.values


def _reference():
    torch.manual_seed(0)
    tokenizer = load_tokenizer("smiles")
    return GPT(1, 32, 2, 64, 64, dropout=0.0).build(tokenizer).eval(), tokenizer


def test_made_once_then_reused_and_refused_with_other_settings(tmp_path):
    reference, tokenizer = _reference()
    path = tmp_path / "set" / "samples.parquet"
    ReferenceSamples(path, SETTINGS).prepare(reference, tokenizer, _score, torch.device("cpu"))
    frame = ReferenceSamples(path, SETTINGS).read()
    assert len(frame) == 12 and {"sequence", "input_ids", "energy", "valid", "ref_logprob", "value_length"} <= set(frame)
    assert np.allclose(frame["energy"], [len(s) / 10 for s in frame["sequence"]])
    assert json.loads(pq.read_schema(path).metadata[SETTINGS_KEY]) == SETTINGS

    def never(texts):
        raise AssertionError("sampled again")

    ReferenceSamples(path, SETTINGS).prepare(reference, tokenizer, never, torch.device("cpu"))  # same settings
    for key, value in [("top_k", 5), ("oracle", {"class": "QED"})]:
        with pytest.raises(ValueError, match=f"made with different \\['{key}'\\]"):
            ReferenceSamples(path, {**SETTINGS, key: value}).prepare(reference, tokenizer, never, torch.device("cpu"))
    # the same seed and settings draw the same samples
    again = tmp_path / "again.parquet"
    ReferenceSamples(again, SETTINGS).make(reference, tokenizer, _score, torch.device("cpu"))
    pd.testing.assert_frame_equal(pd.read_parquet(again), frame)


def test_a_failed_preparation_leaves_no_file(tmp_path):
    reference, tokenizer = _reference()

    def broken(texts):
        raise RuntimeError("oracle down")

    with pytest.raises(RuntimeError, match="oracle down"):
        ReferenceSamples(tmp_path / "s.parquet", SETTINGS).prepare(reference, tokenizer, broken, torch.device("cpu"))
    frame = pd.DataFrame({"sequence": ["C"], "input_ids": [[1]], "energy": [0.1]})
    with pytest.raises(Exception):
        ReferenceSamples(tmp_path / "s.parquet", {"bad": object()}).write(frame)  # settings not JSON
    assert list(tmp_path.iterdir()) == []
