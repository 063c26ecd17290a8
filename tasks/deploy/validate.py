"""Each generated deployment file checked by its own field's validator (installed by `make setup`).

| file | validators |
|---|---|
| Dockerfile | checkov (dockerfile policies: non-root USER, HEALTHCHECK, pinned tag, ...) |
| compose.yaml | yamllint; docker-compose `config` (the Compose schema, no engine needed) |
| k8s/*.yaml | yamllint; kubernetes-validate --strict (the API schemas); checkov (kubernetes policies) |
| prometheus/prometheus.yml, alerts.yml | yamllint; promtool check config / check rules |
| grafana/dashboard.json | JSON; every panel's PromQL through promtool (as recording rules) |

A validator that is not installed is a failure, not a skip: a file nobody checked is not "valid".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml


REPO = Path(__file__).resolve().parents[2]
# The default rules, with PyYAML's block-sequence style (not indented under their key) and long
# PromQL lines allowed.
YAMLLINT_CONFIG = ("{extends: default, rules: {line-length: {max: 250}, document-start: disable, "
                   "indentation: {spaces: consistent, indent-sequences: whatever}, comments: {min-spaces-from-content: 1}}}")
KUBERNETES_VERSION = "1.33.0"


def _tool(name: str) -> str:
    """A validator's executable: the venv's own, the tools venv's (checkov), or the system's."""
    for folder in (Path(sys.executable).parent, REPO / ".venv-tools" / "bin"):
        if (folder / name).is_file():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"validator {name!r} is not installed; run `make setup`")
    return found


def _run(command: list[str], cwd: Path | None = None) -> tuple[bool, str]:
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600)
    except FileNotFoundError as exc:
        return False, str(exc)
    return done.returncode == 0, (done.stdout + done.stderr)[-4000:]


def yamllint(path: Path) -> tuple[bool, str]:
    return _run([_tool("yamllint"), "-s", "-d", YAMLLINT_CONFIG, str(path)])


def kubernetes_schema(path: Path) -> tuple[bool, str]:
    return _run([_tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(path)])


def checkov(path: Path, framework: str) -> tuple[bool, str]:
    ok, out = _run([_tool("checkov"), "-f", str(path), "--framework", framework, "--compact", "--quiet",
                    "--skip-download"])
    return ok, out


def promtool_config(path: Path) -> tuple[bool, str]:
    """promtool on a copy of the folder with a placeholder key file: it insists that the
    credentials file exists, and the real key is the deployer's, never in the package."""
    with tempfile.TemporaryDirectory(prefix="slmforge-promtool-") as tmp:
        for item in path.parent.iterdir():
            if item.is_file():
                shutil.copy2(item, Path(tmp) / item.name)
        (Path(tmp) / "slmforge_api_key").write_text("placeholder\n")
        return _run([_tool("promtool"), "check", "config", str(Path(tmp) / path.name)])


def promtool_rules(path: Path) -> tuple[bool, str]:
    return _run([_tool("promtool"), "check", "rules", str(path)])


def compose_config(path: Path) -> tuple[bool, str]:
    return _run([_tool("docker-compose"), "-f", str(path.resolve()), "config", "-q"], cwd=path.resolve().parent)


def grafana_dashboard(path: Path) -> tuple[bool, str]:
    """Valid JSON with panels, and every panel's query valid PromQL (promtool parses it as a rule)."""
    try:
        dashboard = json.loads(path.read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    except (ValueError, KeyError, TypeError) as exc:
        return False, f"not a dashboard with panels and targets: {exc}"
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"panel:{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as tmp:
        yaml.safe_dump(rules, tmp)
    try:
        return promtool_rules(Path(tmp.name))
    finally:
        os.unlink(tmp.name)


VALIDATORS = {
    "Dockerfile": [lambda p: checkov(p, "dockerfile")],
    "compose.yaml": [yamllint, compose_config],
    "k8s": [yamllint, kubernetes_schema, lambda p: checkov(p, "kubernetes")],
    "prometheus.yml": [yamllint, promtool_config],
    "alerts.yml": [yamllint, promtool_rules],
    "dashboard.json": [grafana_dashboard],
}


def validators_for(path: Path) -> list:
    return VALIDATORS["k8s"] if path.parent.name in ("k8s", "vllm") else VALIDATORS[path.name]


def validate_file(path: Path) -> list[str]:
    """Failures of one file (empty when every validator accepts it)."""
    failures = []
    for check in validators_for(path):
        ok, out = check(path)
        if not ok:
            failures.append(f"{path.name}: {out.strip()[-1500:]}")
    return failures


def validate_deployment(folder: Path, files: list[str]) -> dict[str, list[str]]:
    """Failures by file (relative path) for the deployment files in `folder`."""
    return {name: errors for name in files if (errors := validate_file(folder / name))}
