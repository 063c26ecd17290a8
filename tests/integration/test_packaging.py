"""The installed distribution carries configs/ (the default prompt suite among them) and every
code package, and tasks.core.resources.config_dir() finds the configs both in a checkout and installed."""

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tasks.core.resources import config_dir
from tests.helpers import REPO

SHIPPED = ("pyproject.toml", "README.md", "flows", "tasks", "configs")


def test_a_checkout_reads_the_repository_configs():
    assert config_dir() == REPO / "configs"
    assert (config_dir() / "prompts" / "default.yaml").is_file()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy: an in-tree build would leave build/ and egg-info changes in the checkout.
    source = tmp_path_factory.mktemp("source")
    for name in SHIPPED:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, source / name)
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # A newcomer's `make setup` shows no page of setuptools warnings about config folders.
    assert "absent from the `packages` configuration" not in done.stdout + done.stderr, done.stdout[-3000:]
    (built,) = out.glob("slmforge-*.whl")
    return built


def test_the_wheel_holds_every_config_under_the_installed_name(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "slmforge_configs/prompts/default.yaml" in names
    expected = {f"slmforge_configs/{p.relative_to(REPO / 'configs')}" for p in (REPO / "configs").rglob("*.yaml")}
    folders = {f"slmforge_configs.{p.name}" for p in (REPO / "configs").iterdir() if p.is_dir()}
    assert folders <= set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert expected <= names
    assert not any(name.startswith("configs/") for name in names)  # no generic top-level package


def test_the_wheel_holds_every_code_module(wheel):
    # pyproject.toml lists the packages by hand; a package missing there is missing here.
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {
        str(p.relative_to(REPO)) for folder in ("flows", "tasks") for p in (REPO / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    missing = sorted(modules - names)
    assert not missing, f"add their packages to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_an_installed_wheel_finds_its_configs(wheel, tmp_path):
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # -I -S: neither the checkout nor the venv's editable install is importable, only `target`.
    probe = f"import sys; sys.path.insert(0, {str(target)!r}); from tasks.core.resources import config_dir; print(config_dir())"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found = Path(done.stdout.strip())
    assert found == target / "slmforge_configs"
    assert (found / "prompts" / "default.yaml").read_text() == (REPO / "configs" / "prompts" / "default.yaml").read_text()


def test_the_wheel_ships_the_evaluation_and_calibration_texts(wheel):
    # Read from the installed package, never from the running Python (tasks/evaluate/texts/README.md).
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"tasks/evaluate/texts/{p.name}" for p in (REPO / "tasks" / "evaluate" / "texts").iterdir()}
    assert "tasks/evaluate/texts/python-3.11.7-language-reference.txt" in shipped and shipped <= names
