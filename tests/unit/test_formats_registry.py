"""Meta-tests: every registered format honours the interface, every module imports on its own,
parsing a config loads no runtime, and every shipped config validates."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys

import pytest

from tasks import formats as registry
from tasks.config import load_config
from tasks.core.errors import ConfigError
from tasks.evaluate.prompt_suite import load_prompt_suite
from tasks.formats.base import Format
from tests.helpers import REPO, write_config

BUILT_IN = ("gguf", "onnx")
# The test-only format (tests/formats/hf_torch) is held to the same interface as the built-in ones.
PLUG_INS = {"hf-torch": "tests.formats.hf_torch"}
FORMATS = [*BUILT_IN, *PLUG_INS]
# What `Format` promises: its annotated attributes and the methods declared in its body.
FORMAT_ATTRIBUTES = ("name", "config_model", "runtime_module", "measure_tools")
FORMAT_METHODS = sorted(name for name, value in vars(Format).items()
                        if inspect.isfunction(value) and not name.startswith("_"))
RUNTIMES = ("llama_cpp", "onnxruntime", "onnxruntime_genai", "torch")
MODULES = sorted(
    ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    for package in ("tasks", "flows") for path in (REPO / package).rglob("*.py")
)
BASE = {"name": "t", "model_name": "M", "source": {"kind": "local", "path": "/nowhere"}}


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_the_interface_is_what_these_tests_check():
    assert set(FORMAT_ATTRIBUTES) <= set(Format.__annotations__)
    assert FORMAT_METHODS == ["build", "package", "size_facts", "variants"]


@pytest.fixture(autouse=True)
def _plug_ins(monkeypatch):
    # Registered for each test and removed after it: the registry is process-wide state.
    for name, module in PLUG_INS.items():
        monkeypatch.setitem(registry._MODULES, name, module)


def test_the_built_in_formats_are_registered():
    assert set(BUILT_IN) <= set(registry.known_formats()) and registry.REFERENCE_FORMAT in BUILT_IN


@pytest.mark.parametrize("name", FORMATS)
def test_every_registered_format_implements_the_interface(name):
    fmt = registry.get_format(name)
    assert fmt.name == name
    for attribute in FORMAT_ATTRIBUTES:
        assert hasattr(fmt, attribute), f"{name}: FORMAT lacks {attribute}"
    for method in FORMAT_METHODS:
        ours, theirs = inspect.signature(getattr(Format, method)), inspect.signature(getattr(fmt, method))
        assert callable(getattr(fmt, method)), f"{name}: FORMAT.{method} is not callable"
        assert list(theirs.parameters) == list(ours.parameters)[1:], f"{name}.{method}{theirs} != Format.{method}{ours}"
    assert isinstance(fmt.measure_tools, tuple) and all(isinstance(t, str) for t in fmt.measure_tools)
    # The config model the registry hands to config parsing is the format's own.
    assert registry.config_model(name) is fmt.config_model
    # Strict and complete on defaults: unknown keys are errors, and every field has a default.
    assert fmt.config_model.model_config.get("extra") == "forbid"
    assert fmt.variants(fmt.config_model()), f"{name}: its default config asks for no variant"


def test_the_reference_format_builds_the_base():
    assert callable(getattr(registry.get_format(registry.REFERENCE_FORMAT), "build_base", None))


@pytest.mark.parametrize("name", FORMATS)
def test_every_runtime_module_imports_and_has_load(name):
    runtime = importlib.import_module(registry.get_format(name).runtime_module)
    assert callable(getattr(runtime, "load", None))
    assert {"n_ctx", "threads", "n_gpu_layers", "all_logits"} <= set(inspect.signature(runtime.load).parameters)


def test_the_reference_runtime_also_tokenizes():
    runtime = importlib.import_module(registry.get_format(registry.REFERENCE_FORMAT).runtime_module)
    assert callable(getattr(runtime, "tokenize_text", None))


def test_unknown_format_suggests_the_near_match(tmp_path):
    with pytest.raises(ConfigError, match="unknown format 'ggfu'; did you mean 'gguf'"):
        registry.get_format("ggfu")
    with pytest.raises(ConfigError, match="did you mean 'onnx'"):
        registry.config_model("onyx")
    with pytest.raises(ConfigError, match="known: .*gguf.*onnx"):
        registry.get_format("tflite")
    # and the same through a pipeline config
    with pytest.raises(ConfigError, match="did you mean 'gguf'"):
        load_config(write_config(tmp_path / "c.yaml", {**BASE, "formats": {"ggfu": {}}}))


def test_a_registered_plug_in_resolves_by_name_and_parses_in_a_config(tmp_path):
    assert registry.get_format("hf-torch").name == "hf-torch" and "hf-torch" in registry.known_formats()
    config = load_config(write_config(tmp_path / "c.yaml", {**BASE, "formats": {"hf-torch": {"dtype": "bfloat16"}}}))
    assert config.formats["hf-torch"].dtype == "bfloat16"


def test_static_quant_table_matches_the_installed_llama_cpp():
    import llama_cpp

    from tasks.formats.gguf.config import NEEDS_IMATRIX, QUANT_TYPES

    installed = {name.removeprefix("LLAMA_FTYPE_MOSTLY_") for name in dir(llama_cpp)
                 if name.startswith("LLAMA_FTYPE_MOSTLY_")}
    assert set(QUANT_TYPES) == installed
    assert len(QUANT_TYPES) == len(set(QUANT_TYPES)) and set(NEEDS_IMATRIX) <= set(QUANT_TYPES)


def test_parsing_the_default_config_loads_no_runtime():
    done = _python(
        "import sys; from pathlib import Path; from tasks.config import load_config; "
        "config = load_config(Path('configs/default.yaml')); assert {'gguf', 'onnx'} <= set(config.formats); "
        f"print(sorted(m for m in {RUNTIMES!r} if m in sys.modules))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"parsing a config imported {done.stdout.strip()}"


# Each project module imported first, with every project module forgotten before it: an import
# cycle only shows when its module is imported first. Third-party packages stay loaded between
# them (a cycle is always among the project's own modules), so one interpreter does it in seconds
# where one interpreter per module took minutes.
IMPORT_EACH_ALONE = """
import importlib, json, sys, traceback
failures = {}
for module in json.loads(sys.argv[1]):
    for name in [m for m in sys.modules if m.split(".")[0] in ("tasks", "flows")]:
        del sys.modules[name]
    try:
        importlib.import_module(module)
    except Exception:
        failures[module] = traceback.format_exc()[-2000:]
print(json.dumps(failures))
"""


# Locust's gevent patches ssl and sockets at import, which works only before anything imported ssl:
# its module gets an interpreter of its own, as in its real use (a Locust child process).
OWN_INTERPRETER = ("tasks.serve.locustfile",)


@pytest.fixture(scope="module")
def import_failures() -> dict[str, str]:
    failures = {}
    batches = [[m for m in MODULES if m not in OWN_INTERPRETER], *([m] for m in OWN_INTERPRETER)]
    for batch in batches:
        done = subprocess.run([sys.executable, "-c", IMPORT_EACH_ALONE, json.dumps(batch)], cwd=REPO,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        failures.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return failures


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports_alone(module, import_failures):
    assert module not in import_failures, import_failures.get(module)


def test_the_import_check_sees_a_cycle(tmp_path):
    """The one-interpreter check still catches a cycle that only breaks when its module comes first."""
    package = tmp_path / "tasks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from tasks.b import B\nA = 1\n")
    (package / "b.py").write_text("from tasks.a import A\nB = 2\n")
    done = subprocess.run([sys.executable, "-c", IMPORT_EACH_ALONE, json.dumps(["tasks.b", "tasks.a"])], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert set(json.loads(done.stdout.strip().splitlines()[-1])) == {"tasks.a", "tasks.b"}


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_pipeline_config_validates(path):
    config = load_config(path)
    assert config.name and config.formats


@pytest.mark.parametrize("fragment", sorted(p for folder in ("quant", "eval") for p in (REPO / "configs" / folder).glob("*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_config_fragment_composes_into_a_valid_config(fragment, tmp_path):
    assert load_config(write_config(tmp_path / "c.yaml", {**BASE, "include": [str(fragment)]})).name


@pytest.mark.parametrize("suite", sorted((REPO / "configs" / "prompts").glob("*.yaml")), ids=lambda p: p.name)
def test_every_prompt_suite_validates(suite):
    assert load_prompt_suite(suite).prompts
