"""Where slmforge's shipped files are: the configs/ folder (default prompt suite, presets).

configs/ stays at the top of the repository, beside flows/ and tasks/; pyproject.toml installs
it as the package `slmforge_configs` (a top-level `configs` package would clash with other
distributions). A checkout or editable install reads the repository's folder, so an edit there
takes effect without a reinstall; an installed wheel reads the package's folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

CONFIG_PACKAGE = "slmforge_configs"


def config_dir() -> Path:
    """The folder that holds default.yaml, prompts/, quant/ and eval/."""
    root = Path(__file__).resolve().parents[2]
    # pyproject.toml beside tasks/ is a checkout; site-packages has none, even if some other
    # distribution installed a folder named `configs` there.
    if (root / "pyproject.toml").is_file() and (root / "configs").is_dir():
        return root / "configs"
    # A namespace package (configs/ has no __init__.py), so its folder comes from the import
    # spec: importlib.resources.files() gives a MultiplexedPath there, not a filesystem path.
    spec = importlib.util.find_spec(CONFIG_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise FileNotFoundError(
            f"slmforge's configs are missing: no {root / 'configs'} (not a checkout) and no installed "
            f"package {CONFIG_PACKAGE!r}; reinstall slmforge (pip install --force-reinstall slmforge)."
        )
    return Path(locations[0])
