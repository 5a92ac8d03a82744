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
