"""The "prompts" worker mode on a tiny random-weight GGUF: real conversion, a real fresh worker
process, the real shipped suite. Random weights answer nothing, so only structure is checked,
plus determinism: greedy decoding run twice agrees with itself token for token."""

import pytest

from tasks.acquire import AcquireConfig, acquire_model
from tasks.acquire.sources import LocalSource
from tasks.convert import ConvertConfig, convert_to_gguf
from tasks.evaluate import run_worker
from tasks.evaluate.prompt_suite import DEFAULT_SUITE, load_prompt_suite

MAX_TOKENS = 8  # structure only: a few tokens per prompt keep the test at a few seconds


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tiny_model_dir):
    store = tmp_path_factory.mktemp("prompt-store")
    model = acquire_model(LocalSource(kind="local", path=tiny_model_dir), AcquireConfig(), store_root=store)
    return convert_to_gguf(model.hf_dir, architecture=model.architecture, identity=model.identity,
                           model_name="Tiny-Llama", config=ConvertConfig(), store_root=store).gguf_path


def test_prompts_mode_returns_rows_score_and_self_agreement(tiny_gguf):
    request = {"mode": "prompts", "model": str(tiny_gguf), "threads": 1, "max_tokens": MAX_TOKENS}
    first = run_worker(request, timeout_s=300)

    suite = load_prompt_suite(DEFAULT_SUITE)
    assert [row["id"] for row in first["prompts"]] == [p.id for p in suite.prompts]
    assert first["n_prompts"] == len(suite.prompts) and first["max_tokens"] == MAX_TOKENS
    for row in first["prompts"]:
        assert set(row) == {"id", "kind", "output", "tokens", "correct"}
        assert isinstance(row["output"], str) and isinstance(row["correct"], bool)
        assert 1 <= len(row["tokens"]) <= MAX_TOKENS and all(isinstance(t, int) for t in row["tokens"])
    assert 0.0 <= first["task_score"] <= 1.0
    assert "golden_agreement" not in first  # no base given

    again = run_worker({**request, "base_rows": first["prompts"]}, timeout_s=300)
    assert again["golden_agreement"] == 1.0  # greedy on the same file: the same tokens
