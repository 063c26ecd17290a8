"""A package's deployment files are checked by the validators this host has; a missing one is said,
with how to get it, and never reads as "valid"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.formats.gguf.card import serving_section
from tasks.formats.gguf.deploy import validate
from tasks.formats.gguf.deploy.write import VALIDATED


@pytest.fixture
def folder(tmp_path) -> Path:
    for name in VALIDATED:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x: 1\n")
    return tmp_path


def _host_with(monkeypatch, present: set[str], failures: dict[str, list[str]] | None = None) -> list[str]:
    ran = []
    monkeypatch.setattr(validate, "find_tool", lambda name: f"/bin/{name}" if name in present else None)

    def fake_validate(path: Path) -> list[str]:
        ran.append(path.name)
        return (failures or {}).get(path.name, [])
    monkeypatch.setattr(validate, "validate_file", fake_validate)
    return ran


def test_a_missing_validator_says_not_validated_and_how_to_get_it(folder, monkeypatch):
    ran = _host_with(monkeypatch, present={"yamllint", "kubernetes-validate"})
    report = validate.check_deployment(folder, list(VALIDATED))
    assert report["prometheus/alerts.yml"]["status"] == "not validated"
    assert "not validated: promtool not found; Prometheus's promtool" in report["prometheus/alerts.yml"]["note"]
    assert report["Dockerfile"]["missing"] == ["checkov"]
    assert not any(r["status"] == "valid" for r in report.values())  # every file here lacks one validator
    assert ran == []  # nothing half-checked is reported as checked
    assert validate.validation_summary(report) == "not validated: checkov, docker-compose, promtool not found"


def test_only_files_whose_every_validator_ran_are_valid(folder, monkeypatch):
    _host_with(monkeypatch, present=set(validate.HOW_TO_GET), failures={"compose.yaml": ["compose.yaml: bad key"]})
    report = validate.check_deployment(folder, list(VALIDATED))
    assert report["Dockerfile"] == {"status": "valid", "checked_by": ["checkov"], "missing": [],
                                    "note": "valid (checkov)"}
    assert report["compose.yaml"]["status"] == "invalid"
    assert validate.validation_summary(report) == "invalid: compose.yaml"
    del report["compose.yaml"]
    assert validate.validation_summary(report) == "valid"


def test_the_card_carries_each_file_s_verdict(folder, monkeypatch):
    _host_with(monkeypatch, present={"yamllint", "kubernetes-validate", "checkov"})
    report = validate.check_deployment(folder, list(VALIDATED))
    card = serving_section({}, levels=[1], server="s", ollama_tag="m:q", gguf_name="m.gguf", n_ctx=512,
                           deploy_files=True, validation=report)
    assert "- `k8s/llama-server.yaml`: valid (yamllint, kubernetes-validate, checkov)" in card
    assert "- `prometheus/prometheus.yml`: not validated: promtool not found" in card


def test_the_available_validators_are_part_of_what_a_package_is_keyed_on(monkeypatch):
    monkeypatch.setattr(validate, "find_tool", lambda name: None)
    none = validate.available_validators()
    monkeypatch.setattr(validate, "find_tool", lambda name: f"/bin/{name}")
    assert none != validate.available_validators() and set(none) == set(validate.HOW_TO_GET)
