import numpy as np
import pytest

from tasks.evaluate.metrics import (
    DivergenceAccumulator, PerplexityAccumulator, chunk_token_ranges, log_softmax, mean_sd, scored_positions,
)


def test_log_softmax_rows_are_normalised():
    logits = np.random.default_rng(0).normal(size=(5, 50)).astype(np.float32) * 10
    assert np.allclose(np.exp(log_softmax(logits)).sum(axis=-1), 1.0)


def test_scored_positions_are_llama_perplexity_second_half():
    # llama-perplexity: first = n_ctx/2, scores n_ctx - 1 - first positions
    positions = range(512)[scored_positions(512)]
    assert positions[0] == 256 and positions[-1] == 510 and len(positions) == 255


def test_chunk_ranges_drop_partial_chunk_and_respect_limit():
    assert chunk_token_ranges(1100, 512, None) == [(0, 512), (512, 1024)]
    assert chunk_token_ranges(5000, 512, 3) == [(0, 512), (512, 1024), (1024, 1536)]
    assert chunk_token_ranges(100, 512, None) == []


def test_perplexity_of_uniform_distribution_is_vocab_size():
    acc = PerplexityAccumulator()
    acc.add(log_softmax(np.zeros((10, 32))), np.arange(10))
    ppl, stderr = acc.result()
    assert ppl == pytest.approx(32.0)
    assert stderr == pytest.approx(0.0)


def test_divergence_of_identical_models_is_zero_and_agreement_total():
    lp = log_softmax(np.random.default_rng(1).normal(size=(20, 40)))
    acc = DivergenceAccumulator()
    acc.add(lp, lp, np.arange(20) % 40)
    result = acc.result()
    assert result["kld_mean"] == pytest.approx(0.0, abs=1e-12)
    assert result["top1_agreement"] == 1.0
    assert result["delta_p_rms"] == pytest.approx(0.0, abs=1e-12)


def test_divergence_matches_closed_form():
    base = np.log(np.array([[0.5, 0.5]]))
    variant = np.log(np.array([[0.9, 0.1]]))
    acc = DivergenceAccumulator()
    acc.add(base, variant, np.array([1]))
    expected = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    result = acc.result()
    assert result["kld_mean"] == pytest.approx(expected)
    assert result["delta_p_rms"] == pytest.approx(0.4)
    assert result["top1_agreement"] == 1.0  # the base's tie resolves to index 0, the variant's top


def test_mean_sd():
    assert mean_sd([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_sd([4.0]) == (4.0, 0.0)
