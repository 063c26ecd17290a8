"""Every deployment entrypoint resolves to a real flow, and its parameters fit the flow."""

import inspect

import yaml
from prefect import Flow
from prefect.utilities.importtools import import_object

from tests.helpers import REPO


def test_every_deployment_entrypoint_resolves(monkeypatch):
    monkeypatch.chdir(REPO)
    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    assert spec["deployments"]
    for deployment in spec["deployments"]:
        flow = import_object(deployment["entrypoint"])
        assert isinstance(flow, Flow)
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment.get("parameters", {})) <= accepted
        for name, value in deployment.get("parameters", {}).items():
            if name == "config_path":
                assert (REPO / value).is_file()


def test_console_script_points_at_the_cli():
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert callable(import_object(scripts["slmforge"].replace(":", ".")))


def test_converter_uses_its_own_gguf_module():
    from tasks.formats.gguf.convert import converter_gguf_problem

    assert converter_gguf_problem() is None
