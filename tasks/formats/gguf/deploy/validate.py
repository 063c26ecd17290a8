"""Each generated deployment file checked by its own field's validator (installed by `make setup`).

| file | validators |
|---|---|
| Dockerfile | checkov (dockerfile policies: non-root USER, HEALTHCHECK, pinned tag, ...) |
| compose.yaml | yamllint; docker-compose `config` (the Compose schema, no engine needed) |
| k8s/*.yaml | yamllint; kubernetes-validate --strict (the API schemas); checkov (kubernetes policies) |
| prometheus/prometheus.yml, alerts.yml | yamllint; promtool check config / check rules |
| grafana/dashboard.json | JSON; every panel's PromQL through promtool (as recording rules) |

The pipeline checks every package with the validators this host has (`check_deployment`): a file
whose validator is missing is "not validated: <tool> not found; <how to get it>", never "valid", and
the run goes on. `validate_deployment` (the tests, `slmforge check-deploy`) treats a missing
validator as a failure: a file nobody checked is not "valid".
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


REPO = Path(__file__).resolve().parents[4]
# The default rules, with PyYAML's block-sequence style (not indented under their key) and long
# PromQL lines allowed.
YAMLLINT_CONFIG = ("{extends: default, rules: {line-length: {max: 250}, document-start: disable, "
                   "indentation: {spaces: consistent, indent-sequences: whatever}, comments: {min-spaces-from-content: 1}}}")
KUBERNETES_VERSION = "1.33.0"


# How to get each validator, for the "not validated" notes (none of them is needed to run).
HOW_TO_GET = {
    "checkov": "`make test-tools` (its own venv .venv-tools), or `pipx install checkov`",
    "promtool": "Prometheus's promtool (Debian: apt-get install prometheus; or the release archive from prometheus.io)",
    "docker-compose": "docker-compose (Debian: apt-get install docker-compose; or Docker's compose plugin)",
    "yamllint": "pip install yamllint (a dependency of slmforge: reinstall with `make setup`)",
    "kubernetes-validate": "pip install kubernetes-validate (a dependency of slmforge: `make setup`)",
}
# The executables each file's validators need (VALIDATORS below, in the same order).
NEEDS = {
    "Dockerfile": ("checkov",), "compose.yaml": ("yamllint", "docker-compose"),
    "k8s": ("yamllint", "kubernetes-validate", "checkov"), "prometheus.yml": ("yamllint", "promtool"),
    "alerts.yml": ("yamllint", "promtool"), "dashboard.json": ("promtool",),
}


def find_tool(name: str) -> str | None:
    """A validator's executable: the venv's own, the tools venv's (checkov), the system's, or None."""
    for folder in (Path(sys.executable).parent, REPO / ".venv-tools" / "bin"):
        if (folder / name).is_file():
            return str(folder / name)
    return shutil.which(name)


def _tool(name: str) -> str:
    found = find_tool(name)
    if found is None:
        raise FileNotFoundError(f"validator {name!r} is not installed; {HOW_TO_GET.get(name, 'run `make test-tools`')}")
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


def _kind(path: Path) -> str:
    return "k8s" if path.parent.name in ("k8s", "vllm") else path.name


def validators_for(path: Path) -> list:
    return VALIDATORS[_kind(path)]


def available_validators() -> dict[str, bool]:
    """Which validators this host has: part of a package's key, so a host that gains one re-checks."""
    return {name: find_tool(name) is not None for name in sorted(HOW_TO_GET)}


def check_deployment(folder: Path, files: list[str]) -> dict[str, dict]:
    """Per file: {"status": "valid" | "invalid" | "not validated", "checked_by": [...], "note": str}.
    Only a file whose every validator ran and passed is "valid"; a missing validator says how to get it."""
    report = {}
    for name in files:
        path = folder / name
        needs = NEEDS[_kind(path)]
        missing = [tool for tool in needs if find_tool(tool) is None]
        if missing:
            note = "; ".join(f"not validated: {tool} not found; {HOW_TO_GET[tool]}" for tool in missing)
            report[name] = {"status": "not validated", "checked_by": [], "missing": missing, "note": note}
            continue
        failures = validate_file(path)
        report[name] = {"status": "invalid" if failures else "valid", "checked_by": list(needs), "missing": [],
                        "note": "; ".join(failures)[-2000:] if failures else f"valid ({', '.join(needs)})"}
    return report


def validation_summary(report: dict[str, dict]) -> str:
    """One line for a run's summary and MLflow: "valid", "invalid: FILES" or "not validated: TOOLS not found"."""
    invalid = sorted(name for name, r in report.items() if r["status"] == "invalid")
    missing = sorted({tool for r in report.values() for tool in r["missing"]})
    if invalid:
        return f"invalid: {', '.join(invalid)}"
    if missing:
        return f"not validated: {', '.join(missing)} not found"
    return "valid" if report else "no deployment files"


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
