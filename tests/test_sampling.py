import pytest
import torch

from networks.architectures import GPT
from networks.sampling import TokenDecoder, filter_logits, sample, scoring_logprob, sequence_logprob
from networks.tokenizers import load_tokenizer

# The sampler must use the KV-cache keyword of the installed transformers (`cache` from 5.x; the
# deprecated `past_key_values` goes away in 5.40), so a deprecation warning here is a failure.
pytestmark = pytest.mark.filterwarnings("error:.*past_key_values.*:FutureWarning")


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("smiles")


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    return GPT(2, 64, 4, 128, 128, dropout=0.0).build(tok).eval()


def _draw(model, tok, seed=1, **kw):
    return sample(model, tok, 24, max_new_tokens=25, generator=torch.Generator().manual_seed(seed),
                  return_model_logprobs=True, batch_size=10, **kw)


def test_sampler_and_scorer_logprobs_agree(model, tok):
    plain = _draw(model, tok)
    scored = sequence_logprob(model, plain.input_ids, plain.attention_mask)
    assert (scored - plain.logprobs).abs().max() < 1e-4
    assert (scored - plain.model_logprobs).abs().max() < 1e-4
    truncated = _draw(model, tok, top_k=5, temperature=0.8)
    scored = sequence_logprob(model, truncated.input_ids, truncated.attention_mask)
    assert (scored - truncated.model_logprobs).abs().max() < 1e-4
    # under the truncated distribution every sampled sequence is more likely than under the model
    assert (truncated.logprobs > truncated.model_logprobs).all()



def test_scoring_in_chunks_matches_one_pass(model, tok):
    """scoring_logprob: the same numbers as sequence_logprob, a chunk at a time, without gradients."""
    batch = _draw(model, tok)
    whole = sequence_logprob(model, batch.input_ids, batch.attention_mask)
    chunked = scoring_logprob(model, batch.input_ids, batch.attention_mask, batch_size=7)  # 24 = 7+7+7+3
    assert chunked.shape == (24,) and not chunked.requires_grad
    assert (chunked - whole).abs().max() < 1e-4
    assert torch.equal(scoring_logprob(model, batch.input_ids, batch.attention_mask, batch_size=100), whole.detach())
    assert scoring_logprob(model, batch.input_ids[:0], batch.attention_mask[:0]).shape == (0,)


def test_seeded_sampling_is_reproducible(model, tok):
    a, b, c = _draw(model, tok, 5), _draw(model, tok, 5), _draw(model, tok, 6)
    assert torch.equal(a.input_ids, b.input_ids) and a.texts == b.texts
    assert not torch.equal(a.input_ids, c.input_ids)


def test_every_row_ends_at_eos_or_max_length(model, tok):
    batch = _draw(model, tok)
    lengths = batch.attention_mask.sum(1)
    for row, length, finished in zip(batch.input_ids, lengths, batch.finished):
        assert row[0] == tok.bos_token_id
        if finished:
            assert row[length - 1] == tok.eos_token_id
            assert (row[:length - 1] != tok.eos_token_id).all()
        else:
            assert length == 25 + 1
        assert (row[length:] == tok.pad_token_id).all()


def test_top_k_one_is_greedy(model, tok):
    batch = sample(model, tok, 3, max_new_tokens=20, top_k=1)
    greedy = model.generate(torch.full((1, 1), tok.bos_token_id), attention_mask=torch.ones(1, 1, dtype=torch.long),
                            do_sample=False, max_new_tokens=20, eos_token_id=tok.eos_token_id,
                            pad_token_id=tok.pad_token_id)
    width = greedy.size(1)
    for row in batch.input_ids:
        assert row[:width].tolist() == greedy[0].tolist()


def test_vectorised_decoder_matches_batch_decode(model, tok):
    batch = _draw(model, tok)
    assert batch.texts == tok.batch_decode(batch.input_ids, skip_special_tokens=True)
    ids = torch.tensor([[tok.bos_token_id, 4, 4, tok.eos_token_id, 4, tok.pad_token_id]])
    assert TokenDecoder(tok)(ids) == ["CC"]  # nothing after <eos> leaks into the string


def test_filter_logits():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    kept = filter_logits(logits, top_p=0.7)[0]
    assert torch.isfinite(kept[:2]).all() and torch.isinf(kept[2:]).all()
    assert torch.isfinite(filter_logits(logits, top_p=0.85)[0, :3]).all()
    with pytest.raises(ValueError, match="temperature"):
        filter_logits(logits, temperature=0)


def _generic_only(monkeypatch):
    """Sample through the transformers forward, compacting finished rows as the GPT-2 stepper
    does (at every step, tail rows into holes), so both consume the random stream alike."""
    from networks import decoding

    monkeypatch.setattr(decoding.GPT2Stepper, "supports", staticmethod(lambda model: False))
    monkeypatch.setattr(decoding.ModelStepper, "cheap_keep", True)


def test_static_cache_stepper_matches_the_transformers_forward(model, tok, monkeypatch):
    """The GPT-2 stepper computes what GPT2LMHeadModel computes: same samples, same log-probs."""
    from networks.decoding import GPT2Stepper

    assert GPT2Stepper.supports(model)
    fast = _draw(model, tok, top_k=5)
    _generic_only(monkeypatch)
    generic = _draw(model, tok, top_k=5)
    assert fast.texts == generic.texts and torch.equal(fast.attention_mask, generic.attention_mask)
    # sequence sums of fp32 log-probs, added in another order: equal to float rounding relative to
    # their size (an absolute 1e-5 failed once at 1.5e-5 on a loaded machine); a wrong position or
    # cache entry moves them by far more
    torch.testing.assert_close(fast.logprobs, generic.logprobs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.model_logprobs, generic.model_logprobs, rtol=1e-5, atol=1e-5)


def test_compaction_keeps_each_row_with_its_cache(tok):
    """Rows finish at different steps and are compacted by moving tail rows into the holes; each
    row's log-prob must still be that of its own tokens (a row that got another's cache would not)."""
    torch.manual_seed(3)
    eos_happy = GPT(2, 32, 2, 64, 64, dropout=0.0).build(tok).eval()
    with torch.no_grad():
        eos_happy.lm_head.weight[tok.eos_token_id] += 0.15  # tied: rows end at many different lengths
    batch = sample(eos_happy, tok, 64, max_new_tokens=40, generator=torch.Generator().manual_seed(0),
                   return_model_logprobs=True)
    lengths = batch.attention_mask.sum(1)
    assert lengths.unique().numel() > 5
    scored = sequence_logprob(eos_happy, batch.input_ids, batch.attention_mask)
    assert (scored - batch.model_logprobs).abs().max() < 1e-4


def test_too_many_new_tokens_is_a_clear_error(model, tok):
    with pytest.raises(ValueError, match="positions"):
        sample(model, tok, 2, max_new_tokens=model.config.n_positions + 1)


def test_bf16_sampling_and_scoring_agree(model, tok):
    """Under bf16 the sampler's own log-probs (the sampling distribution's) agree with the scorer's
    to bf16 rounding (docs/benchmarks.md: mean 0.03 nats, max 0.15 on molgpt-moses), its
    model_logprobs are the scorer's exactly, and the scorer computes what a bf16-mixed training
    forward computes — so ERA's policy/reference log-ratio starts at exactly 0."""
    batch = sample(model, tok, 32, max_new_tokens=25, generator=torch.Generator().manual_seed(2),
                   return_model_logprobs=True, precision="bf16")
    scored = scoring_logprob(model, batch.input_ids, batch.attention_mask, precision="bf16")
    exact = scoring_logprob(model, batch.input_ids, batch.attention_mask, precision="fp32")
    assert torch.equal(batch.model_logprobs, scored)
    gap = (scored - batch.logprobs).abs()  # T = 1, no truncation: the same distribution
    assert gap.mean() < 0.05 and gap.max() < 0.3
    assert not torch.equal(scored, exact)  # bf16 was really used
    with torch.autocast("cpu", dtype=torch.bfloat16):
        training = sequence_logprob(model, batch.input_ids, batch.attention_mask).detach()
    assert torch.equal(training, scored)


def test_precision_setting(monkeypatch):
    from networks import precision

    monkeypatch.setenv(precision.ENV, "fp32")
    assert precision.compute_dtype("cpu") == torch.float32 and precision.lightning_precision("cpu") == "32-true"
    monkeypatch.setenv(precision.ENV, "bf16")
    assert precision.compute_dtype("cpu") == torch.bfloat16 and precision.lightning_precision("cpu") == "bf16-mixed"
    assert precision.compute_dtype("cpu", "fp32") == torch.float32  # an explicit choice wins
    monkeypatch.setenv(precision.ENV, "auto")
    assert precision.compute_dtype("cpu") == (torch.bfloat16 if precision.native_bf16("cpu") else torch.float32)
    monkeypatch.setenv(precision.ENV, "fp32")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert precision.compute_dtype("cpu") == torch.bfloat16  # an active autocast is followed
    monkeypatch.setenv(precision.ENV, "half")
    with pytest.raises(ValueError, match="REWARDFIT_PRECISION"):
        precision.compute_dtype("cpu")


def test_bucketed_logprob_equals_one_pass_values_and_gradient(model, tok):
    """Length buckets change only the padding: same log-probs (summed and per token, rows in the
    given order) and the same gradient as one padded pass."""
    from networks.sampling import bucketed_logprob

    batch = _draw(model, tok, seed=4)
    ids, mask = batch.input_ids, batch.attention_mask
    assert mask.sum(1).min() < mask.sum(1).max()  # rows of different lengths, or the test is empty
    model.zero_grad()
    one = sequence_logprob(model, ids, mask)
    one.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for buckets in (3, 4, 100):
        got = bucketed_logprob(model, ids, mask, buckets=buckets)
        torch.testing.assert_close(got, one, atol=1e-5, rtol=0)
    got.sum().backward()
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)
    per_token = bucketed_logprob(model, ids, mask, reduce=False)
    assert per_token.shape == (len(ids), ids.size(1) - 1)
    torch.testing.assert_close(per_token, sequence_logprob(model, ids, mask, reduce=False), atol=1e-5, rtol=0)
