"""The ONNX serving check: the GenAI folder behind slmforge's OpenAI-compatible app
(tasks.formats.onnx.server_app: onnxruntime_genai with the folder's own chat template)."""

from __future__ import annotations

import sys

from tasks.formats.base import Built, PackageInputs
from tasks.hosts.processes import free_port
from tasks.serve.check import ServeResult, serve_and_check
from tasks.serve.config import ServeConfig
from tasks.serve.server import running_server
from tasks.store.versions import package_version

SERVER_APP = "tasks.formats.onnx.server_app"  # the server process: its code shapes the served figures


def serve_onnx(built: Built, inputs: PackageInputs, config: ServeConfig) -> ServeResult:
    threads = config.server_threads(inputs.threads)

    def start():
        port = free_port()
        command = [sys.executable, "-m", SERVER_APP, "--model", str(built.path), "--port", str(port),
                   "--threads", str(threads)]
        return running_server(command, port=port, model=built.path.name, startup_timeout_s=config.startup_timeout_s)

    return serve_and_check(
        start, identity={"variant_key": built.key, "threads": threads,
                         "hardware": inputs.provenance.get("measured_on")},
        offline_rows=inputs.metrics.get("prompts"), config=config, threads=threads,
        server_label=f"slmforge onnx_app (onnxruntime-genai {package_version('onnxruntime-genai')})",
        store_root=inputs.store_root, code_modules=(__name__, SERVER_APP),
    )
