"""The real host probe: llama.cpp on the embedded default model, in its own process."""

from __future__ import annotations

import importlib.metadata

from tasks.plan.probe import DECODE_TOKENS, measure_probe


def test_the_probe_times_prefill_and_decode_on_the_embedded_model():
    probe = measure_probe(1)
    assert probe.threads == 1 and probe.llama_cpp == importlib.metadata.version("llama-cpp-python")
    # Decoding one token at a time costs more per token than one batch: a probe that timed nothing
    # (an empty prompt, a model that did not load) would not show it.
    assert 0 < probe.decode_tps < probe.prefill_tps
    assert DECODE_TOKENS / probe.decode_tps < 60  # a 135M model decodes 64 tokens in seconds, not minutes
