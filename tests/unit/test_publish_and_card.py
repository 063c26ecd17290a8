"""`slmforge publish`: the exact huggingface_hub operations, offline; the token never leaks.
The card's Hub metadata block. (The Hub is unreachable here: HfApi's two network calls are
replaced by recorders; everything before them is the real library.)"""

from __future__ import annotations

import hashlib
import logging

import pytest
import yaml
from typer.testing import CliRunner

from tasks.card import hub_metadata, model_card
from tasks.core.errors import UserError
from tasks.publish import publish

TOKEN = "hf_" + "A1b2C3d4" * 5


@pytest.fixture
def package(tmp_path):
    folder = tmp_path / "pkg"
    (folder / "k8s").mkdir(parents=True)
    card = model_card(title="M Q4_K_M (GGUF)", variant={"quant": "Q4_K_M"}, provenance={}, metrics={}, usage="",
                      metadata=hub_metadata(base_model="HuggingFaceTB/SmolLM2-135M-Instruct", license="Apache-2.0",
                                            tags=["gguf", "q4_k_m"]))
    files = {"README.md": card, "model.gguf": "GGUF....", "Modelfile": "FROM ./model.gguf\n",
             "k8s/llama-server.yaml": "kind: Deployment\n", "slmforge-manifest.json": "{}"}
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder, files


def test_card_opens_with_hub_metadata(package):
    folder, _ = package
    text = (folder / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front == {"base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "base_model_relation": "quantized",
                     "license": "apache-2.0", "tags": ["gguf", "q4_k_m"]}
    assert text.split("---\n", 2)[2].lstrip().startswith("# M Q4_K_M (GGUF)")


def test_dry_run_lists_exactly_the_operations(package):
    folder, files = package
    plan = publish(folder, repo_id="me/m-gguf", dry_run=True)
    assert [f.path_in_repo for f in plan.files] == sorted(files)
    for item in plan.files:
        assert item.sha256 == hashlib.sha256(files[item.path_in_repo].encode()).hexdigest()
        assert item.size == len(files[item.path_in_repo].encode())


def test_upload_sends_those_operations_and_never_shows_the_token(package, monkeypatch, caplog, capsys):
    from huggingface_hub import CommitOperationAdd, HfApi

    folder, files = package
    sent = {}

    def create_repo(self, repo_id, **kwargs):
        sent["repo"] = (repo_id, kwargs, self.token)

    def create_commit(self, repo_id, operations, commit_message, **kwargs):
        sent["commit"] = (repo_id, operations, commit_message)
        return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    plan = publish(folder, repo_id="me/m-gguf")
    repo_id, operations, message = sent["commit"]
    assert repo_id == "me/m-gguf" and all(isinstance(op, CommitOperationAdd) for op in operations)
    assert [(op.path_in_repo, op.path_or_fileobj) for op in operations] == [
        (name, str(folder.resolve() / name)) for name in sorted(files)]
    assert sent["repo"][0] == "me/m-gguf" and sent["repo"][1]["private"] is True and sent["repo"][2] == TOKEN
    assert plan.commit_url.endswith("/commit/abc")
    shown = plan.model_dump_json() + caplog.text + "".join(capsys.readouterr())
    assert TOKEN not in shown


def test_upload_without_a_token_says_what_to_set(package, monkeypatch):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UserError, match="HF_TOKEN"):
        publish(package[0], repo_id="me/m-gguf")


def test_a_hub_error_is_reported_without_the_token(package, monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    def create_repo(self, repo_id, **kwargs):
        import httpx

        response = httpx.Response(401, request=httpx.Request("POST", "https://huggingface.co/api/repos/create"))
        raise HfHubHTTPError(f"401 Unauthorized for token {TOKEN}", response=response)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(UserError) as caught:
        publish(package[0], repo_id="me/m-gguf")
    assert TOKEN not in str(caught.value) and "401" in str(caught.value)


def test_cli_dry_run_and_a_folder_that_is_not_a_package(package, tmp_path):
    from tasks.cli.main import app

    result = CliRunner().invoke(app, ["publish", str(package[0]), "--repo-id", "me/m-gguf", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would add k8s/llama-server.yaml" in result.output and "dry run: 5 file(s)" in result.output
    result = CliRunner().invoke(app, ["publish", str(tmp_path), "--repo-id", "me/m-gguf", "--dry-run"])
    assert result.exit_code == 1 and "not an slmforge package" in result.output


def test_card_serving_section_shows_the_measured_figures_and_every_target():
    from tasks.formats.gguf.card import serving_section

    metrics = {"serve_smoke_pass": 1.0, "serve_smoke_requests": 6, "serve_decode_tps": 38.25, "decode_tps": 26.1,
               "serve_threads": 1.0}
    for c, rps in ((1, 2.2), (4, 1.5)):
        metrics.update({f"serve_c{c}_requests_per_s": rps, f"serve_c{c}_output_tps": 35.5, f"serve_c{c}_latency_p50_ms": 480,
                        f"serve_c{c}_latency_p95_ms": 600, f"serve_c{c}_ttft_p50_ms": 37, f"serve_c{c}_ttft_p95_ms": 160,
                        f"serve_c{c}_errors": 0})
    text = serving_section(metrics, levels=[1, 2, 4], server="llama-cpp-python's server", ollama_tag="m:q4",
                           gguf_name="m.gguf", n_ctx=2048, deploy_files=True)
    assert "Smoke test: **passed**" in text and "38.2 tok/s with 1 decode thread(s)" in text
    assert "(offline `decode_tps`: 26.1)" in text
    assert "| 1 | 2.20 | 35.5 | 480 | 600 | 37 | 160 | 0 |" in text and "| 4 | 1.50 |" in text
    assert "| 2 |" not in text  # a level that was not run has no row
    for target in ("llama_cpp.server", "ollama create m:q4", "docker compose up", "k8s/llama-server.yaml",
                   "vllm/vllm.yaml", "prometheus/alerts.yml", "grafana/dashboard.json"):
        assert target in text
    unserved = serving_section({}, levels=[1], server="s", ollama_tag="m:q4", gguf_name="m.gguf", n_ctx=2048,
                               deploy_files=False)
    assert "## Served" not in unserved and "ollama create m:q4" in unserved and "kubectl" not in unserved


def test_card_of_a_gguf_without_chat_template_says_how_to_serve_it_as_measured():
    from tasks.formats.gguf.card import serving_section

    text = serving_section({"serve_smoke_pass": 1.0}, levels=[1], server="llama-cpp-python's server",
                           ollama_tag="g:q8", gguf_name="g.gguf", n_ctx=512, deploy_files=False, chat_template=False)
    assert "the prompt-only chat format (it has no chat template)" in text
    assert "python -m tasks.formats.gguf.llama_cpp_server --chat_format prompt-only --model g.gguf" in text
    assert "python -m llama_cpp.server" not in text and "ollama create g:q8" in text
