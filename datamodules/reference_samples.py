"""The reference's own scored samples, the data of offline alignment without a user's file.

Sampled once from the frozen reference, scored by the oracle and stored as Parquet — token ids,
energies, validity, the oracle's raw values and the reference's log-probabilities — with the
settings they were made with, so that the file is reusable and inspectable with pandas, and a file
made with other settings is an error naming what changed instead of being silently reused. The
file is written to a temporary name and renamed, so an interrupted preparation never looks complete.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from networks.configurable import same_settings
from networks.files import honour_umask
from networks.sampling import sample

log = logging.getLogger(__name__)

SETTINGS_KEY = b"rewardfit.dataset_settings"

#: ``score(texts) -> (energies, valid, values)``: float64 energies, bools, each property's values
Scorer = Callable[[list[str]], tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]


def describe(obj, depth: int = 0):
    """A plain-data description of a configured object (class and settings, recursively), used
    to tell whether two oracles would score the same way."""
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, (list, tuple)):
        return [describe(o, depth + 1) for o in obj]
    if isinstance(obj, dict):
        return {str(k): describe(v, depth + 1) for k, v in obj.items()}
    if depth > 4 or not hasattr(obj, "__dict__"):
        return type(obj).__name__
    settings = {k: describe(v, depth + 1) for k, v in sorted(vars(obj).items())
                if not k.startswith("_") and k not in ("cache_size", "n_workers", "disk_cache", "model")}
    return {"class": f"{type(obj).__module__}.{type(obj).__qualname__}", **settings}


class ReferenceSamples:
    """A stored set of the reference's scored samples (Parquet) and the settings it depends on.

    Args:
        path: the Parquet file.
        settings: plain data the samples depend on (reference, tokenizer, sampling settings, seed,
            oracle); recorded in the file and compared when it is reused.
    """

    def __init__(self, path: str | Path, settings: dict):
        self.path = Path(path)
        self.settings = settings

    def prepare(self, reference: torch.nn.Module, tokenizer, score: Scorer, device: torch.device) -> None:
        """Check the stored file, or make it when there is none (:meth:`make`)."""
        if self.path.is_file():
            self.check()
        else:
            self.make(reference, tokenizer, score, device)

    def check(self) -> None:
        """A stored sample set made with other settings is an error, never silently reused."""
        import pyarrow.parquet as pq

        stored = (pq.read_schema(self.path).metadata or {}).get(SETTINGS_KEY)
        if stored is None:
            log.warning("%s has no recorded settings (made by an older version); reusing it as is", self.path)
            return
        stored, now = json.loads(stored), json.loads(json.dumps(self.settings))
        changed = sorted(k for k in set(stored) | set(now) if not same_settings(stored.get(k), now.get(k)))
        if changed:
            raise ValueError(f"{self.path} was made with different {changed} (stored {[stored.get(k) for k in changed]}, "
                             f"now {[now.get(k) for k in changed]}); delete it or set dataset_path to a new file")

    def make(self, reference: torch.nn.Module, tokenizer, score: Scorer, device: torch.device) -> None:
        """Sample ``num_samples`` sequences from ``reference`` on ``device`` with the settings'
        ``max_new_tokens``, ``temperature``, ``top_k`` and ``seed``, score them and store them."""
        s = self.settings
        log.info("sampling %d sequences from the reference for %s", s["num_samples"], self.path)
        generator = torch.Generator(device=device).manual_seed(s["seed"])
        batch = sample(reference.to(device), tokenizer, s["num_samples"], s["max_new_tokens"], s["temperature"],
                       s["top_k"], generator=generator, return_model_logprobs=True)
        energies, valid, values = score(batch.texts)
        lengths = batch.attention_mask.sum(1).tolist()
        self.write(pd.DataFrame({
            "sequence": batch.texts,
            "input_ids": [row[:n].tolist() for row, n in zip(batch.input_ids, lengths)],
            "energy": energies, "valid": valid, "ref_logprob": batch.model_logprobs.double().numpy(),
            **{f"value_{k}": v for k, v in values.items()},
        }))

    def write(self, frame: pd.DataFrame) -> None:
        """``frame`` as the Parquet file, with the settings, atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".parquet", dir=self.path.parent)
        os.close(fd)
        honour_umask(tmp)  # mkstemp's 0600 would stay on the renamed file
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            metadata = {**(table.schema.metadata or {}), SETTINGS_KEY: json.dumps(self.settings).encode()}
            pq.write_table(table.replace_schema_metadata(metadata), tmp)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def read(self) -> pd.DataFrame:
        return pd.read_parquet(self.path)
