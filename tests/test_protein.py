"""Protein design: the exact site policy on an ESM masked LM, landscape oracles, directed evolution."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from networks.architectures import ESM, Pretrained
from networks.site_policy import (
    SiteError, SiteLayout, SitePolicy, build_masked_lm, sample_variants, variant_logprob,
)
from networks.tokenizers import AMINO_ACIDS, ESM_VOCAB, load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
GB1_PARENT = "MQYKLILNGKTLKGETTTEAVDAATAEKVFKQYANDNGVDGEWTYDDATKTFTVTE"
TINY = dict(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=32)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("protein")


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    net = ESM(**TINY).build(tokenizer).eval()
    with torch.no_grad():  # a random init is near uniform; sharpen it so the checks mean something
        net.lm_head.decoder.weight.mul_(20.0)
    return net


@pytest.fixture(scope="module")
def gb1():
    from oracles.fitness_table import GB1_SITES, FitnessTable

    return FitnessTable("GB1", "GB1.fasta", sites=GB1_SITES)


# ---------------------------------------------------------------- site policy


def test_sampler_emits_only_amino_acids_at_the_sites_and_keeps_the_parent(tokenizer, model):
    layout = SiteLayout(GB1_PARENT, [39, 40, 41, 54], tokenizer)
    with torch.no_grad():  # make special and non-standard tokens overwhelmingly likely
        bias = model.lm_head.bias.clone()
        others = [i for t, i in tokenizer.get_vocab().items() if t not in AMINO_ACIDS]
        model.lm_head.bias[others] += 100.0
    try:
        drawn = sample_variants(model, layout, 200, generator=torch.Generator().manual_seed(0))
    finally:
        with torch.no_grad():
            model.lm_head.bias.copy_(bias)
    assert len(drawn) == 200 and drawn.indices.shape == (200, 4)
    assert all(len(v) == 4 and set(v) <= set(AMINO_ACIDS) for v in drawn.variants)
    assert torch.isfinite(drawn.logprobs).all()
    for variant in drawn.variants:
        full = layout.full_sequence(variant)
        assert len(full) == len(GB1_PARENT)
        assert [i for i, (a, b) in enumerate(zip(full, GB1_PARENT)) if a != b] == \
            [s - 1 for s, r, w in zip(layout.sites, variant, layout.wild_type) if r != w]
    # what the model is fed: the parent with the sites masked, nothing else changed
    ids = layout.masked(1)[0]
    assert tokenizer.decode(ids[layout.positions[0] + 1: layout.positions[1]]) == ""  # adjacent sites
    assert (ids[layout.positions] == tokenizer.mask_token_id).all()
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[layout.positions] = False
    assert torch.equal(ids[keep], layout.parent_ids[keep])


@pytest.mark.parametrize("order, context", [(None, None), ([3, 0, 2, 1], None), (None, 5)])
def test_sampler_and_scorer_log_probs_agree(tokenizer, model, order, context):
    layout = SiteLayout(GB1_PARENT, [39, 40, 41, 54], tokenizer, order=order, context=context)
    drawn = sample_variants(model, layout, 64, temperature=0.7, top_k=6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        sampled = variant_logprob(model, layout, drawn.variants, temperature=0.7, top_k=6)
        exact = variant_logprob(model, layout, drawn.variants, chunk_size=50)
    assert (sampled - drawn.logprobs).abs().max() < 1e-4
    assert (exact - drawn.model_logprobs).abs().max() < 1e-4
    assert (drawn.logprobs >= drawn.model_logprobs - 1e-4).float().mean() > 0.5  # truncation sharpens


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_site_order_factorisation_sums_to_one_over_all_variants(tokenizer, model, order):
    layout = SiteLayout("MKTAYIAKQR", [3, 7], tokenizer, order=order)
    variants = ["".join(p) for p in itertools.product(AMINO_ACIDS, repeat=2)]
    with torch.no_grad():
        logp = variant_logprob(model, layout, variants).double()
        per_site = variant_logprob(model, layout, variants, per_site=True)
    assert len(variants) == 400
    assert abs(torch.logsumexp(logp, 0).exp().item() - 1.0) < 1e-4
    assert logp.exp().max() > 2.0 / 400  # not trivially uniform
    assert torch.allclose(per_site.sum(1).double(), logp, atol=1e-5)
    # the first generated site's marginal is the model's masked distribution at that site
    first = order[0]
    probs = logp.exp().reshape(20, 20).sum(1 - first)
    with torch.no_grad():
        direct = model(input_ids=layout.masked(1)).logits[0, layout.positions[first], layout.aa_ids].softmax(-1)
    assert torch.allclose(probs.float(), direct, atol=1e-5)


def test_seeded_sampling_is_reproducible_and_exclusion_gives_new_variants(tokenizer, model):
    layout = SiteLayout(GB1_PARENT, [39, 40, 41, 54], tokenizer)

    def draw(seed, **kw):
        return sample_variants(model, layout, 50, top_k=5, generator=torch.Generator().manual_seed(seed), **kw)

    a, b, c = draw(3), draw(3), draw(4)
    assert a.variants == b.variants and torch.equal(a.logprobs, b.logprobs)
    assert a.variants != c.variants
    measured = set(a.variants)
    new = draw(3, exclude=measured)
    assert len(new) == 50 and len(set(new.variants)) == 50 and not measured & set(new.variants)
    # a tiny space runs dry: fewer than asked, never a repeat
    small = SiteLayout("MKTAYIAKQR", [3], tokenizer)
    left = sample_variants(model, small, 20, exclude=set(AMINO_ACIDS[:15]), max_attempts=50,
                           generator=torch.Generator().manual_seed(0))
    assert set(left.variants) <= set(AMINO_ACIDS[15:]) and len(set(left.variants)) == len(left)
    with pytest.raises(SiteError, match="every one"):
        sample_variants(model, small, 1, exclude=set(AMINO_ACIDS))


def test_site_policy_bad_inputs(tokenizer, model):
    with pytest.raises(SiteError, match="outside the parent"):
        SiteLayout("MKTAYIAKQR", [3, 11], tokenizer)
    with pytest.raises(SiteError, match="outside the parent"):
        SiteLayout("MKTAYIAKQR", [0], tokenizer)
    with pytest.raises(SiteError, match="not distinct"):
        SiteLayout("MKTAYIAKQR", [3, 3], tokenizer)
    with pytest.raises(SiteError, match="permutation"):
        SiteLayout("MKTAYIAKQR", [3, 4], tokenizer, order=[0, 0])
    with pytest.raises(SiteError, match="alphabet"):
        SiteLayout("MKT1AY", [2], tokenizer)
    layout = SiteLayout("MKTAYIAKQR", [3, 4], tokenizer)
    with pytest.raises(SiteError, match="not one of the 20"):
        variant_logprob(model, layout, ["AX"])
    with pytest.raises(SiteError, match="one per site"):
        variant_logprob(model, layout, ["AAA"])
    with pytest.raises(ValueError, match="temperature"):
        sample_variants(model, layout, 2, temperature=0.0)
    with pytest.raises(ValueError, match="masked_lm"):
        build_masked_lm(Pretrained("some/dir", masked_lm=False), tokenizer)


def test_a_downloaded_hf_esm_directory_loads(tmp_path, tokenizer):
    """The layout of a hub download of ESM-2: config, weights and vocab.txt, no tokenizer.json."""
    torch.manual_seed(0)
    net = ESM(**TINY).build(tokenizer)
    net.save_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("\n".join(ESM_VOCAB) + "\n")
    policy = SitePolicy.load(GB1_PARENT, [39, 40], path=str(tmp_path))
    assert torch.equal(policy.model.lm_head.decoder.weight, net.lm_head.decoder.weight)
    assert len(policy.sample(3, generator=torch.Generator().manual_seed(0))) == 3
    (tmp_path / "vocab.txt").write_text("\n".join(reversed(ESM_VOCAB)) + "\n")
    with pytest.raises(ValueError, match="ESM alphabet"):
        SitePolicy.load(GB1_PARENT, [39, 40], path=str(tmp_path))


# ---------------------------------------------------------------- landscape oracles


def test_gb1_landscape_values_and_penalties(gb1):
    wt = gb1(["VDGV", gb1.full_sequence("VDGV")])
    assert wt.values["fitness"].tolist() == [1.0, 1.0] and wt.energies.tolist() == [0.0, 0.0]
    best_variant = max(gb1.fitness, key=gb1.fitness.get)
    assert gb1.fitness[best_variant] == pytest.approx(8.76, abs=0.01)
    assert gb1([best_variant]).energies[0].item() == pytest.approx(-math.log(gb1.fitness[best_variant]))
    missing = next("".join(p) for p in itertools.product(AMINO_ACIDS, repeat=4) if "".join(p) not in gb1.fitness)
    res = gb1(["VDG*", missing, gb1.full_sequence(missing)])
    assert not res.valid.any() and res.energies.eq(gb1.penalty).all()
    assert np.isnan(res.values["fitness"]).all()


def test_trpb_landscape_sites_wild_type_and_nonpositive_fitness():
    from oracles.fitness_table import FitnessTable

    oracle = FitnessTable("TrpB3C", "TrpB.fasta")  # its second row lists only two sites
    assert oracle.sites == [106, 107, 108] and oracle.wild_type == "TGA"
    assert max(oracle.fitness.values()) == 1.0
    assert FitnessTable("TrpB3F", "TrpB").sites == [162, 166, 301]  # a bare shipped name is its FASTA
    nonpositive = next(v for v, f in FitnessTable("TrpB3D", "TrpB.fasta").fitness.items() if f <= 0)
    scores = FitnessTable("TrpB3D", "TrpB.fasta")([nonpositive, "TA*"])
    assert not scores.valid.any() and scores.energies.eq(10.0).all()


def test_landscape_bad_input_is_a_clear_error(tmp_path):
    from oracles.fitness_table import FitnessTable, LandscapeError

    with pytest.raises(LandscapeError, match=r"site\(s\) \[57\] outside the parent sequence of length 56"):
        FitnessTable("GB1", "GB1.fasta", sites=[39, 40, 41, 57])
    with pytest.raises(LandscapeError, match="not distinct"):
        FitnessTable("GB1", "GB1.fasta", sites=[39, 39, 41, 54])
    wrong = "A" * 103 + "QET" + "A" * 10  # table says A104, parent has Q
    with pytest.raises(LandscapeError, match=r"do not match the table's wild type.*\(104, 'A', 'Q'\)"):
        FitnessTable("TrpB3A", wrong)
    csv = tmp_path / "nofit.csv"
    csv.write_text("AAs,score,muts\nAA,1.0,K2A:T3A\n")
    with pytest.raises(LandscapeError, match="no fitness column; columns are"):
        FitnessTable(str(csv), "MKTA")
    own = tmp_path / "own.csv"
    own.write_text("AAs,fitness,muts\nKT,1.0,WT\nAT,0.5,K2A\nAA,2.0,K2A:T3A\n")
    oracle = FitnessTable(str(own), "MKTA")
    assert oracle.sites == [2, 3] and oracle([("MAAA")]).values["fitness"][0] == 2.0
    own.write_text("AAs,fitness,muts\nAT,0.5,K2A\nAA,2.0,R2A:T3A\n")
    with pytest.raises(LandscapeError, match="more than one wild-type residue"):
        FitnessTable(str(own), "MKTA")
    own.write_text("AAs,fitness,muts\nAT,0.5,K2A-T3A\n")
    with pytest.raises(LandscapeError, match="cannot read the muts column"):
        FitnessTable(str(own), "MKTA")


# ---------------------------------------------------------------- directed evolution


class RecordingOracle:
    """Wraps a table oracle and keeps every sequence it was asked about."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []
        self.name, self.penalty = inner.name, inner.penalty
        self.parent, self.sites, self.fitness = inner.parent, inner.sites, inner.fitness

    def __call__(self, sequences):
        self.seen += list(sequences)
        return self.inner(sequences)


def _tiny_campaign(oracle, **kw):
    from lightning_modules.directed_evolution import run_campaign

    args = dict(policy=ESM(**TINY), variants_per_round=24, rounds=2, steps_per_round=4, variants_per_step=12,
                lr=1e-2, seed=0)
    args.update(kw)
    return run_campaign(oracle, **args)


def test_directed_evolution_runs_end_to_end_and_moves(gb1, tmp_path):
    from lightning_modules.directed_evolution import DirectedEvolution
    from lightning_modules.pair_losses import DPO, ERA

    oracle = RecordingOracle(gb1)
    history = _tiny_campaign(oracle, objective=ERA(beta=5.0), output_dir=str(tmp_path / "era"))
    assert [h["round/index"] for h in history] == [0, 1, 2]
    assert [h["round/measurements"] for h in history] == [24, 48, 72]
    assert [h["round/unique"] for h in history] == [24, 48, 72]  # never re-measures a variant
    best = [h["round/best_fitness"] for h in history]
    assert best == sorted(best) and best[0] > 0
    assert all(0 <= h["round/top1_fraction"] <= 1 and 0 < h["round/best_normalised"] <= 1 for h in history)
    # every measured sequence is the parent changed at most at the sites
    off_site = [i for i in range(len(gb1.parent)) if i + 1 not in gb1.sites]
    assert len(oracle.seen) == 72 and all(all(s[i] == gb1.parent[i] for i in off_site) for s in oracle.seen)
    for name in ("rounds.csv", "measured.csv", "best_so_far.png"):
        assert (tmp_path / "era" / name).stat().st_size > 0

    # training moves the policy away from the reference, and only the trained method does
    torch.manual_seed(0)
    module = DirectedEvolution(gb1, policy=ESM(**TINY), objective=DPO(0.5), variants_per_round=24, rounds=1,
                               steps_per_round=5, variants_per_step=12, lr=1e-2)
    import lightning as L

    L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, max_epochs=-1).fit(module)
    with torch.no_grad():
        pi = variant_logprob(module.model, module.layout, module.variants)
        ref = variant_logprob(module.reference, module.layout, module.variants)
    assert (pi - ref).abs().max() > 1e-3
    assert torch.allclose(ref, module.ref_logps, atol=1e-5)

    random = _tiny_campaign(gb1, method="random", rounds=1)
    assert [h["round/unique"] for h in random] == [24, 48]
    with pytest.raises(ValueError, match="method must be one of"):
        DirectedEvolution(gb1, method="greedy")


def _cli_fit(args):
    from main import cli_main

    cli_main(["fit", "--config", str(ROOT / "configs/protein/gb1_tiny.yaml"), *args])


def test_cli_campaign_resumes_exactly_from_a_checkpoint(tmp_path, monkeypatch):
    import csv

    monkeypatch.setattr("sys.argv", ["main.py"])

    def run(name, extra=()):
        out = tmp_path / name
        args = ["--trainer.default_root_dir", str(out), "--model.init_args.output_dir", str(out),
                "--trainer.enable_checkpointing=true",
                "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                f"--trainer.callbacks.dirpath={out}/checkpoints", "--trainer.callbacks.save_last=true"]
        _cli_fit(args + list(extra))
        with open(out / "measured.csv") as handle:
            return [(r["variant"], r["round"]) for r in csv.DictReader(handle)], out

    straight, _ = run("straight")
    assert {r for _, r in straight} == {"0", "1", "2"}
    first, out = run("interrupted", ["--trainer.max_epochs", "1"])  # stopped after round 1
    assert first == straight[: len(first)] and {r for _, r in first} == {"0", "1"}
    resumed, _ = run("interrupted", ["--ckpt_path", str(out / "checkpoints" / "last.ckpt")])
    assert resumed == straight


def test_campaign_on_your_own_csv_stops_when_the_landscape_is_exhausted(tmp_path):
    from oracles.fitness_table import FitnessTable

    table = tmp_path / "assay.csv"
    table.write_text("AAs,fitness,muts\n" + "".join(f"{a},{i / 19:.4f},K2{a}\n" for i, a in enumerate(AMINO_ACIDS)))
    oracle = FitnessTable(str(table), "MKTA")
    history = _tiny_campaign(oracle, variants_per_round=8, rounds=4, variants_per_step=4)
    assert [h["round/measurements"] for h in history] == [8, 16, 20]
    assert [h["round/unique"] for h in history] == [8, 16, 20]
    # round 0 from the reference is distinct too: all 20 variants of a 1-site landscape in one round
    from lightning_modules.directed_evolution import DirectedEvolution

    module = DirectedEvolution(oracle, policy=ESM(**TINY), variants_per_round=20)
    for source in ("reference", "policy", "random"):
        proposed, filled = module.propose(source)
        assert sorted(proposed) == sorted(AMINO_ACIDS), source
    assert history[-1]["round/best_normalised"] == 1.0 and history[-1]["round/top1_fraction"] == 1.0
