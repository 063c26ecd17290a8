"""The MLflow UI as a reviewer meets it, in a real headless Chromium: an slmforge experiment's
view link lands on the model-training runs list with the variant runs and their key figures in
view, not on MLflow 3's GenAI traces overview. A real `mlflow server` on loopback, temp store."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from tasks.tracking import client as tracking
from tasks.tracking.mlflow_ui import ALL_VIEW_KEY, mark_model_development, view_url
from tests.helpers import require_tool



@pytest.fixture
def chromium() -> str:
    return require_tool("chromium", "Debian's chromium: `make test-tools` installs it as root",
                        found=shutil.which("chromium") or shutil.which("chromium-browser"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # schema created before the server starts
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--default-artifact-root", (tmp_path / "artifacts").as_uri()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer /health within 120 s")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def _chromium(chromium: str, url: str, tmp_path, *extra: str) -> str:
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}",
         "--window-size=1600,1000", "--virtual-time-budget=40000", *extra, url],
        capture_output=True, text=True, timeout=180)
    return done.stdout


def test_view_link_opens_variants_with_key_figures(chromium, mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server)
    experiment_id = tracking.ensure_experiment(client, "ui-check", mlflow_server)
    mark_model_development(client, experiment_id)
    parent = tracking.start_run(client, experiment_id, name="ui-check-parent", tags={})
    # A warm re-run's child (figures reused from the store) repeats a variant: out of the default view.
    for quant, kld, reused in (("Q8_0", 0.004, "false"), ("Q4_K_M", 0.0567, "false"), ("Q2_K", 0.91, "true")):
        run = tracking.start_run(client, experiment_id, name=f"tiny-gguf-{quant.lower()}", parent_run_id=parent,
                                 tags={"slmforge.tier": "micro", "slmforge.gate": "pass", "slmforge.reused": reused})
        tracking.log_values(client, run, params={"format": "gguf", "quant": quant},
                            metrics={"kld_mean": kld, "size_bytes": 1.2e8, "decode_tps": 150.0})
        client.set_terminated(run)
    client.set_terminated(parent)
    url = view_url(mlflow_server, experiment_id)
    dom = _chromium(chromium, url, tmp_path, "--dump-dom")
    # The variant rows themselves (not a collapsed parent), with their figures as columns.
    assert "tiny-gguf-q8_0" in dom and "tiny-gguf-q4_k_m" in dom, dom[-3000:]
    assert "tiny-gguf-q2_k" not in dom  # each variant once: the reused re-run is one view away
    everything = _chromium(chromium, view_url(mlflow_server, experiment_id, key=ALL_VIEW_KEY), tmp_path, "--dump-dom")
    assert "tiny-gguf-q2_k" in everything and "tiny-gguf-q8_0" in everything, everything[-3000:]
    assert "kld_mean" in dom and "0.0567" in dom
    assert "Group: gguf" in dom
    # Not the GenAI overview: no traces usage panels.
    assert "Token Usage" not in dom and "Detect Issues" not in dom
    shot = tmp_path / "experiment.png"
    _chromium(chromium, url, tmp_path, f"--screenshot={shot}")
    assert shot.read_bytes()[:4] == b"\x89PNG"
