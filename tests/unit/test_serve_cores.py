"""Pure cores of the serving checks: smoke verdicts, Locust figures, KV-cache sizing."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from tasks.formats.gguf.deploy.sizing import kv_cache_bytes
from tasks.serve.config import LoadConfig, ServeConfig
from tasks.serve.load import level_metrics, percentile, single_stream_decode_tps
from tasks.serve.smoke import judge_smoke


def row(id_, output, correct, error=None):
    return {"id": id_, "output": output, "correct": correct, "error": error}


def test_smoke_passes_when_answers_hold_and_fails_on_any_error():
    offline = [row("a", "42", True), row("b", "x", False)]
    metrics, reasons = judge_smoke([row("a", "42", True), row("b", "y", False)], offline, max_lost_answers=0)
    assert reasons == [] and metrics["serve_smoke_pass"] == 1.0
    assert metrics["serve_task_score"] == 0.5 and metrics["serve_offline_agreement"] == 0.5
    metrics, reasons = judge_smoke([row("a", "", False, "APIConnectionError: refused")], offline, max_lost_answers=5)
    assert metrics["serve_smoke_pass"] == 0.0 and metrics["serve_smoke_errors"] == 1
    assert "refused" in reasons[0]


def test_lost_answers_beyond_the_allowance_fail():
    offline = [row("a", "42", True), row("b", "7", True)]
    served = [row("a", "41", False), row("b", "7", True)]
    assert judge_smoke(served, offline, max_lost_answers=1)[1] == []
    assert "a" in judge_smoke(served, offline, max_lost_answers=0)[1][0]


def test_percentile_reads_locusts_histogram():
    histogram = {"100": 50, "200": 45, "900": 5}
    assert percentile(histogram, 0.5) == 100
    assert percentile(histogram, 0.95) == 200
    assert percentile(histogram, 0.99) == 900
    assert math.isnan(percentile({}, 0.5))


def test_level_figures_and_the_single_stream_decode_rate():
    level = {"seconds": 2.0, "entries": {
        "chat": {"num_requests": 4, "num_failures": 1, "total_content_length": 40, "total_response_time": 2000,
                 "response_times": {"400": 2, "600": 2}},
        "ttft": {"num_requests": 4, "total_response_time": 200, "response_times": {"50": 4}}}}
    m = level_metrics(2, level, requested=5)
    assert m["serve_c2_requests_per_s"] == 2.0 and m["serve_c2_output_tps"] == 20.0
    assert m["serve_c2_latency_p50_ms"] == 400 and m["serve_c2_latency_p95_ms"] == 600
    assert m["serve_c2_ttft_p50_ms"] == 50
    assert m["serve_c2_errors"] == 2  # one failed, one never completed
    # 36 tokens after the first ones, in 1.8 s after the first tokens.
    assert single_stream_decode_tps(level) == pytest.approx(20.0)


def test_kv_cache_bytes_at_f16():
    facts = {"n_layer": 30, "n_head_kv": 3, "key_length": 64, "value_length": 64}
    assert kv_cache_bytes(facts, 2048) == 2048 * 30 * 3 * 128 * 2


def test_serve_config_is_strict():
    with pytest.raises(ValidationError):
        ServeConfig(smoke_prompt=3)
    with pytest.raises(ValidationError, match="concurrency"):
        LoadConfig(concurrency=[0, 2])


def test_the_server_leaves_a_core_to_the_load_client_unless_told():
    assert ServeConfig().server_threads(2) == 1
    assert ServeConfig().server_threads(8) == 7
    assert ServeConfig().server_threads(1) == 1  # never zero threads
    assert ServeConfig(threads=4).server_threads(2) == 4
    with pytest.raises(ValidationError):
        ServeConfig(threads=0)


def test_an_empty_answer_fails_unless_the_file_said_nothing_offline_too():
    served = [row("a", "", False)]
    assert judge_smoke(served, [row("a", "42", True)], max_lost_answers=1)[0]["serve_smoke_errors"] == 1
    assert judge_smoke([row("a", "", False)], None, max_lost_answers=0)[0]["serve_smoke_errors"] == 1
    metrics, reasons = judge_smoke([row("a", "", False)], [row("a", "", False)], max_lost_answers=0)
    assert reasons == [] and metrics["serve_offline_agreement"] == 1.0


def test_a_gguf_without_chat_template_is_served_with_the_prompt_only_format():
    from pathlib import Path

    from tasks.formats.gguf.llama_cpp_server import format_prompt_only
    from tasks.formats.gguf.llama_cpp_server import llama_cpp_command

    templated = llama_cpp_command(Path("/m/a.gguf"), port=1, n_ctx=64, threads=1)
    assert templated[1:3] == ["-m", "llama_cpp.server"] and "--chat_format" not in templated
    plain = llama_cpp_command(Path("/m/a.gguf"), port=1, n_ctx=64, threads=1, chat_template=False)
    assert plain[1:3] == ["-m", "tasks.formats.gguf.llama_cpp_server"]
    assert plain[plain.index("--chat_format") + 1] == "prompt-only"
    one = format_prompt_only([{"role": "user", "content": "What is 7 times 8?"}])
    assert one.prompt == "What is 7 times 8?" and not one.added_special  # BOS from the tokenizer, as offline
    two = format_prompt_only([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert two.prompt == "Be brief.\n\nHi"
