import itertools

import numpy as np

import pytest
import torch
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from lightning_modules.metrics import InternalDiversity, Novelty, Uniqueness, Validity, sample_quality


def _value(metric, samples):
    metric.update(samples)
    return float(metric.compute())


def test_validity_counts_unparsable_and_empty():
    assert _value(Validity(), ["CCO", "not-a-smiles", "C1CC", "", "c1ccccc1"]) == pytest.approx(2 / 5)
    assert _value(Validity("dna"), ["ACGT", "ACGN", ""]) == pytest.approx(1 / 3)


def test_reported_fractions_are_exact_at_a_threshold():
    """1,800 valid of 2,000 is 0.90, not float32's 0.89999998 (which a ≥ 0.90 bar would refuse)."""
    from lightning_modules.metrics import validity_and_uniqueness

    samples = ["CCO"] * 900 + ["CCN"] * 900 + ["not-a-smiles"] * 200
    quality = validity_and_uniqueness(samples)
    assert quality["validity"] == 0.9 and quality["validity"] >= 0.90
    assert float(torch.tensor(1800.0) / torch.tensor(2000)) < 0.9  # what the old path reported
    assert quality["uniqueness"] == 2 / 1800
    assert validity_and_uniqueness([]) == {"validity": 0.0, "uniqueness": 0.0}


def test_uniqueness_uses_canonical_forms_among_valid():
    assert _value(Uniqueness(), ["CCO", "OCC", "CCN", "xx"]) == pytest.approx(2 / 3)
    assert _value(Uniqueness(), ["bad"]) == 0.0


def test_novelty_against_a_reference():
    novelty = Novelty(reference=["CCO", "c1ccccc1"])
    assert _value(novelty, ["OCC", "CCN", "CCN", "invalid"]) == pytest.approx(1 / 2)
    canon = Novelty(reference=["OCC"], canonicalize_reference=True)
    assert _value(canon, ["CCO"]) == 0.0


def test_internal_diversity_known_values(chembl_smiles):
    assert _value(InternalDiversity(), ["CCO", "CCO"]) == pytest.approx(0.0)
    # brute force with RDKit's own Tanimoto over all ordered pairs, self-pairs included
    mols = chembl_smiles[:40]
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in mols]
    sims = [DataStructs.TanimotoSimilarity(a, b) for a, b in itertools.product(fps, fps)]
    expected = 1 - sum(sims) / len(sims)
    assert _value(InternalDiversity(), mols + ["invalid("]) == pytest.approx(expected, abs=1e-6)
    p2 = 1 - (sum(s ** 2 for s in sims) / len(sims)) ** 0.5
    assert _value(InternalDiversity(p=2), mols) == pytest.approx(p2, abs=1e-6)


def test_dna_internal_diversity_is_intdiv_over_6mer_sets():
    """DNA IntDiv1: 1 − mean Jaccard similarity of the sequences' 6-mer sets over all ordered pairs,
    self-pairs included (brute force with Python sets); unreadable sequences are skipped."""
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 40)) for _ in range(12)] + ["ACGTAC" * 5]
    sets = [{s[i:i + 6] for i in range(len(s) - 5)} for s in seqs]
    sims = [len(a & b) / len(a | b) for a, b in itertools.product(sets, sets)]
    diversity = InternalDiversity(domain="dna")
    assert _value(diversity, seqs + ["ACGN" * 10, "ACG"]) == pytest.approx(1 - sum(sims) / len(sims), abs=1e-6)
    assert _value(InternalDiversity(domain="dna"), [seqs[0]] * 3) == pytest.approx(0.0)
    assert sample_quality(seqs, "dna")["samples/intdiv1"] == pytest.approx(1 - sum(sims) / len(sims), abs=1e-6)
    with pytest.raises(ValueError, match="IntDiv is defined"):
        InternalDiversity(domain="protein")


def test_metrics_accumulate_over_updates():
    metric = Uniqueness()
    metric.update(["CCO"])
    metric.update(["OCC", "CCC"])
    assert float(metric.compute()) == pytest.approx(2 / 3)
    assert isinstance(Validity().compute(), torch.Tensor)


def test_fcd_is_zero_for_identical_sets_and_positive_otherwise():
    pytest.importorskip("fcd_torch", reason="FCD is the optional fcd extra (installed with dev)")
    from lightning_modules.metrics import frechet_chemnet_distance

    a = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "CCCC", "c1ccncc1", "CC(C)O", "OCCO"] * 10
    b = ["CCOC", "c1ccccc1C", "CC(=O)N", "CCCN", "CCCCC", "c1ccncc1C", "CC(C)N", "NCCO"] * 10
    assert abs(frechet_chemnet_distance(a, a)) < 1e-3
    assert frechet_chemnet_distance(a + ["invalid"], b) > 1.0  # invalid samples are dropped first


def test_fcd_to_cached_reference_statistics_equals_fcd_to_the_smiles(tmp_path):
    pytest.importorskip("fcd_torch", reason="FCD is the optional fcd extra (installed with dev)")
    from lightning_modules.metrics import chemnet_statistics, frechet_chemnet_distance

    ref = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "CCCC", "c1ccncc1", "CC(C)O", "OCCO"] * 5
    gen = ["CCOC", "c1ccccc1C", "CC(=O)N", "CCCN", "CCCCC", "c1ccncc1C", "CC(C)N", "NCCO"] * 5
    direct = frechet_chemnet_distance(gen, ref)
    first = chemnet_statistics(ref, cache_dir=tmp_path)
    chunked = chemnet_statistics(ref, chunk=7)  # summed over chunks: the same mean and covariance
    assert abs(chunked["sigma"] - first["sigma"]).max() < 1e-8 and abs(chunked["mu"] - first["mu"]).max() < 1e-8
    assert len(list(tmp_path.glob("chemnet_*.npz"))) == 1
    again = chemnet_statistics(ref, cache_dir=tmp_path)  # read back from the cache
    assert (again["sigma"] == first["sigma"]).all()
    assert frechet_chemnet_distance(gen, again) == pytest.approx(direct, rel=1e-6)
    chemnet_statistics(ref[:-1], cache_dir=tmp_path)  # another list, another file
    assert len(list(tmp_path.glob("chemnet_*.npz"))) == 2
    with pytest.raises(ValueError, match="at least 2"):
        chemnet_statistics(["CCO"])


def test_kmer_counts_skip_non_acgt_windows():
    from lightning_modules.metrics import kmer_counts

    counts = kmer_counts(["ACGTN", "acg", "A"], k=2)
    index = {"AC": 1, "CG": 6, "GT": 11}
    assert counts.sum() == 5  # AC CG GT from the first, AC CG from the second; TN skipped, "A" too short
    assert counts[index["AC"]] == 2 and counts[index["CG"]] == 2 and counts[index["GT"]] == 1


def test_kmer_spectrum_shift_orders_generators_by_composition():
    import math
    import random

    from lightning_modules.metrics import KmerSpectrumShift

    rng = random.Random(0)
    reference = ["".join(rng.choice("ACGT") for _ in range(200)) for _ in range(200)]
    same_source = ["".join(rng.choice("ACGT") for _ in range(200)) for _ in range(200)]
    gc_rich = ["".join(rng.choice("GGGCCCAT") for _ in range(200)) for _ in range(200)]
    repeats = ["ACGTTGCA" * 25] * 200

    def shift(samples, k=4):
        metric = KmerSpectrumShift(reference, k=k)
        for chunk in (samples[:50], samples[50:]):  # accumulates over updates
            metric.update(chunk)
        return float(metric.compute())

    assert shift(reference) == pytest.approx(0.0, abs=1e-9)
    assert shift(same_source) < 0.02 < shift(gc_rich) < shift(repeats) <= math.log(2) + 1e-6
    with pytest.raises(ValueError, match="no ACGT"):
        KmerSpectrumShift(["NNNN"], k=3)
