import numpy as np
import pytest

from tasks.evaluate.metrics import (
    DivergenceAccumulator, PerplexityAccumulator, chunk_ids, chunk_targets, chunk_token_ranges, mean_sd,
    scored_positions, token_nll,
)
from tasks.evaluate.reference import (
    LEVELS, LOGIT_RANGE, decode_logprobs, encode_logprobs, read_chunk, write_chunk,
)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """The float64 reference the cores are checked against."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _divergence(logits: np.ndarray, base_logprobs: np.ndarray, targets: np.ndarray) -> dict:
    """Run the accumulator as the quality pass does: the variant's nll and log-sum-exp first."""
    logits = np.asarray(logits, dtype=np.float32)
    nll, log_sum_exp = token_nll(logits, targets)
    acc = DivergenceAccumulator()
    acc.add(logits, nll, log_sum_exp, np.asarray(base_logprobs, dtype=np.float32), targets)
    return acc.result()


def test_token_nll_is_minus_the_log_softmax_of_the_target():
    logits = np.random.default_rng(0).normal(size=(5, 50)).astype(np.float32) * 10
    targets = np.array([0, 7, 49, 3, 12])
    nll, log_sum_exp = token_nll(logits, targets)
    expected = -_log_softmax(logits)[np.arange(5), targets]
    assert nll.dtype == np.float64 and np.allclose(nll, expected, atol=1e-5)
    # every row normalised: the probabilities of all targets of a row sum to 1
    all_targets = [token_nll(logits, np.full(5, t))[0] for t in range(50)]
    assert np.allclose(np.exp(-np.array(all_targets)).sum(axis=0), 1.0)
    assert np.allclose(log_sum_exp, logits.max(axis=1) + np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(1)))


def test_scored_positions_are_llama_perplexity_second_half():
    # llama-perplexity: first = n_ctx/2, scores n_ctx - 1 - first positions
    positions = range(512)[scored_positions(512)]
    assert positions[0] == 256 and positions[-1] == 510 and len(positions) == 255


def test_chunk_ranges_drop_partial_chunk_and_respect_limit():
    assert chunk_token_ranges(1100, 512, None) == [(0, 512), (512, 1024)]
    assert chunk_token_ranges(5000, 512, 3) == [(0, 512), (512, 1024), (1024, 1536)]
    assert chunk_token_ranges(100, 512, None) == []


def test_chunk_targets_follow_the_scored_positions_and_bos_leads_each_chunk():
    tokens = list(range(100, 116))  # one chunk of n_ctx = 8 starts at 8
    targets = chunk_targets(tokens, 8, 16)
    assert len(targets) == len(range(8)[scored_positions(8)])  # one target per scored position
    assert targets.tolist() == tokens[8 + 4 + 1 : 16]  # position j predicts token j+1
    assert chunk_ids(tokens, 8, 16, bos=1) == [1, *tokens[9:16]]
    assert chunk_ids(tokens, 8, 16, bos=None) == tokens[8:16]


def test_perplexity_of_uniform_distribution_is_vocab_size():
    acc = PerplexityAccumulator()
    acc.add(token_nll(np.zeros((10, 32), dtype=np.float32), np.arange(10))[0])
    ppl, stderr = acc.result()
    assert ppl == pytest.approx(32.0)
    assert stderr == pytest.approx(0.0)


def test_divergence_of_identical_models_is_zero_and_agreement_total():
    logits = np.random.default_rng(1).normal(size=(20, 40)).astype(np.float32)
    result = _divergence(logits, _log_softmax(logits), np.arange(20) % 40)
    # float32 log-probs on both sides: zero up to float32 rounding
    assert result["kld_mean"] == pytest.approx(0.0, abs=1e-6)
    assert result["top1_agreement"] == 1.0
    assert result["delta_p_rms"] == pytest.approx(0.0, abs=1e-6)
    assert result["scored_tokens"] == 20


def test_divergence_matches_closed_form():
    base = np.log(np.array([[0.5, 0.5]]))
    variant = np.log(np.array([[0.9, 0.1]]))
    result = _divergence(variant, base, np.array([1]))
    expected = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    assert result["kld_mean"] == pytest.approx(expected, rel=1e-6)
    assert result["delta_p_rms"] == pytest.approx(0.4, rel=1e-6)
    assert result["delta_p_mean"] == pytest.approx(0.1 - 0.5, rel=1e-6)
    assert result["top1_agreement"] == 1.0  # the base's tie resolves to index 0, the variant's top


def test_divergence_drops_base_terms_below_the_logit_range_as_llama_cpp():
    # The base gives token 2 a log-prob below -16 nats: its term is left out, however far the variant is.
    base = np.log(np.array([[0.5, 0.5 - 1e-9, 1e-9]]))
    variant = np.log(np.array([[0.5, 0.25, 0.25]]))
    result = _divergence(variant, base, np.array([0]))
    kept = 0.5 * np.log(0.5 / 0.5) + (0.5 - 1e-9) * np.log((0.5 - 1e-9) / 0.25)
    assert base[0, 2] < -LOGIT_RANGE
    assert result["kld_mean"] == pytest.approx(kept, rel=1e-5)


def _random_logits(rows: int = 40, vocab: int = 3000, seed: int = 2) -> np.ndarray:
    # spread wide enough that every row has values more than LOGIT_RANGE below its top
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(rows, vocab)) * 8).astype(np.float32)


def test_reference_encoding_reproduces_log_softmax_within_one_step():
    logits = _random_logits()
    decoded = decode_logprobs(*encode_logprobs(logits))
    exact = _log_softmax(logits)
    kept = logits > logits.max(axis=1, keepdims=True) - LOGIT_RANGE
    assert kept.any(axis=1).all() and (~kept).any(axis=1).all()  # both regions exercised
    assert np.abs(decoded - exact)[kept].max() <= LOGIT_RANGE / LEVELS
    # everything at or below max - 16 is stored as the floor, never above it
    floor = exact.max(axis=1, keepdims=True) - LOGIT_RANGE
    assert (decoded[~kept] <= np.broadcast_to(floor, decoded.shape)[~kept] + LOGIT_RANGE / LEVELS).all()


def test_reference_encoding_of_a_flat_row_is_exact():
    scale, min_log_prob, q = encode_logprobs(np.zeros((2, 16), dtype=np.float32))
    assert (scale == 0).all() and (q == 0).all()
    assert np.allclose(decode_logprobs(scale, min_log_prob, q), -np.log(16))


def test_kld_against_its_own_encoding_is_zero_up_to_the_rounding():
    # Each stored log-prob is off by at most half a step, unbiased; the KLD sum weighs those errors
    # by p (as llama-perplexity's does), so a row's KLD is within half a step of 0 and the mean
    # over many rows is ~0: 2048 rows put 1e-6 at about 3 standard errors. (Not below 1e-6 row by
    # row: the term is first order in the rounding, as in llama-perplexity.)
    logits = _random_logits(rows=2048, vocab=1000)
    targets = np.arange(len(logits)) * 7 % logits.shape[1]
    base = decode_logprobs(*encode_logprobs(logits))
    nll, log_sum_exp = token_nll(logits, targets)
    acc = DivergenceAccumulator()
    acc.add(logits, nll, log_sum_exp, base, targets)
    per_row = np.concatenate(acc.kld)
    assert np.abs(per_row).max() <= 0.5 * LOGIT_RANGE / LEVELS * 1.01
    result = acc.result()
    assert abs(result["kld_mean"]) < 1e-6
    assert result["top1_agreement"] == 1.0 and result["delta_p_rms"] < 1e-4


def test_reference_chunk_round_trips_through_its_file(tmp_path):
    logits = _random_logits(rows=150, vocab=500)  # more than one ROW_BLOCK
    stored = write_chunk(tmp_path, 3, logits)
    chunk = read_chunk(tmp_path, 3)
    assert stored == (tmp_path / "chunk-00003.npz").stat().st_size
    assert chunk.q.dtype == np.uint16 and chunk.q.shape == logits.shape
    assert np.array_equal(decode_logprobs(chunk.scale, chunk.min_log_prob, chunk.q),
                          decode_logprobs(*encode_logprobs(logits)))


def test_mean_sd():
    assert mean_sd([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_sd([4.0]) == (4.0, 0.0)
