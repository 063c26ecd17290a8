"""The worker's "speed" mode, which also runs the prompt suite, on a tiny random-weight GGUF: real
conversion, a real fresh worker process, the real shipped suite. Random weights answer nothing,
so only structure is checked, plus determinism: greedy decoding run twice agrees with itself
token for token."""

import json

import pytest
import yaml

from tasks.acquire import AcquireConfig, acquire_model
from tasks.acquire.sources import LocalSource
from tasks.evaluate.process import run_worker
from tasks.evaluate.prompt_suite import DEFAULT_SUITE, load_prompt_suite, mean_golden_agreement
from tasks.formats import get_format
from tasks.formats.gguf.convert import ConvertConfig, convert_to_gguf

MAX_TOKENS = 8  # structure only: a few tokens per prompt keep the test at a few seconds
RUNTIME = get_format("gguf").runtime_module


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tiny_model_dir):
    store = tmp_path_factory.mktemp("prompt-store")
    model = acquire_model(LocalSource(kind="local", path=tiny_model_dir), AcquireConfig(), store_root=store)
    return convert_to_gguf(model.hf_dir, architecture=model.architecture, identity=model.identity,
                           model_name="Tiny-Llama", config=ConvertConfig(), store_root=store).gguf_path


@pytest.fixture(scope="module")
def speed_request(tiny_gguf, tmp_path_factory):
    """A speed request as measure.py builds it: tokens from the worker's own tokenize mode, and the
    shipped suite with fewer tokens per answer."""
    folder = tmp_path_factory.mktemp("prompt-request")
    (folder / "text.txt").write_text("The quick brown fox jumps over the lazy dog. " * 8)
    tokens = run_worker({"mode": "tokenize", "runtime": RUNTIME, "model": str(tiny_gguf),
                         "text_file": str(folder / "text.txt")}, timeout_s=300)
    assert set(tokens) >= {"tokens", "bos"} and len(tokens["tokens"]) > 16
    (folder / "tokens.json").write_text(json.dumps({"tokens": tokens["tokens"], "bos": tokens["bos"]}))
    suite = yaml.safe_load(DEFAULT_SUITE.read_text())
    (folder / "suite.yaml").write_text(yaml.safe_dump({**suite, "max_tokens": MAX_TOKENS}))
    return {
        "mode": "speed", "runtime": RUNTIME, "model": str(tiny_gguf), "threads": 1, "n_gpu_layers": 0,
        "tokens_file": str(folder / "tokens.json"), "prefill_tokens": 16, "decode_tokens": 4, "repetitions": 3,
        "depths": [8], "ttft_prompt_tokens": 8, "prompts_file": str(folder / "suite.yaml"),
    }


def test_speed_mode_times_and_answers_the_suite_deterministically(speed_request):
    first = run_worker(speed_request, timeout_s=300)

    for name in ("prefill_tps", "decode_tps", "decode_tps_d8", "ttft_ms"):
        assert first[name] > 0 and first[f"{name}_sd"] >= 0, name
    assert first["load_s"] > 0 and first["peak_rss_bytes"] > 0
    assert (first["threads"], first["n_gpu_layers"]) == (1, 0)

    suite = load_prompt_suite(DEFAULT_SUITE)
    assert [row["id"] for row in first["prompts"]] == [p.id for p in suite.prompts]
    assert first["n_prompts"] == len(suite.prompts) and first["max_tokens"] == MAX_TOKENS
    for row in first["prompts"]:
        assert set(row) == {"id", "kind", "output", "tokens", "correct"}
        assert isinstance(row["output"], str) and isinstance(row["correct"], bool)
        assert 1 <= len(row["tokens"]) <= MAX_TOKENS and all(isinstance(t, int) for t in row["tokens"])
    assert 0.0 <= first["task_score"] <= 1.0
    assert "golden_agreement" not in first  # derived at the flow's edge, once the base's rows are known

    again = run_worker(speed_request, timeout_s=300)
    assert mean_golden_agreement(again["prompts"], first["prompts"]) == 1.0  # greedy, same file: same tokens


def test_speed_mode_without_a_suite_only_times(speed_request):
    result = run_worker({**speed_request, "prompts_file": None, "depths": []}, timeout_s=300)
    assert result["decode_tps"] > 0 and "prompts" not in result and "task_score" not in result


def test_speed_mode_beside_an_anchor_reports_each_figure_per_anchor(speed_request, tiny_gguf):
    """The anchor (here the same file, as the f16 base is its own anchor's twin) runs in its own real
    process: every figure gets a ratio near 1, its standard error and the anchor's mean; the
    variant's peak memory is its own process's, and the anchor process is gone afterwards."""
    import psutil

    anchor = {"runtime": RUNTIME, "model": str(tiny_gguf), "threads": 1}
    result = run_worker({**speed_request, "prompts_file": None, "anchor": anchor}, timeout_s=300)
    for name in ("prefill_tps", "decode_tps", "decode_tps_d8", "ttft_ms"):
        assert result[f"{name}_anchor"] > 0 and result[f"{name}_rel_se"] >= 0, name
        assert 0.2 < result[f"{name}_rel"] < 5, (name, result[f"{name}_rel"])  # the same file, noise aside
    assert not [p for p in psutil.process_iter(["name", "cmdline"])
                if "slmforge-speed-anchor" in " ".join(p.info["cmdline"] or [])]


def test_an_anchor_that_cannot_load_fails_the_measurement_with_the_reason(speed_request, tmp_path):
    from tasks.core.errors import MeasurementError

    missing = tmp_path / "no-such-f16.gguf"
    with pytest.raises(MeasurementError, match="speed anchor"):
        run_worker({**speed_request, "prompts_file": None,
                    "anchor": {"runtime": RUNTIME, "model": str(missing), "threads": 1}}, timeout_s=300)
