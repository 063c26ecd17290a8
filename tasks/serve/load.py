"""The bounded load test: Locust, headless, a fixed number of streamed requests per concurrency level.

Locust runs in a child process (it monkey-patches the standard library with gevent on import, which
must not happen in the flow's process). Its own statistics (`--json`) give the request counts,
failures, token totals and the latency histograms the percentiles are read from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tasks.core.errors import MeasurementError
from tasks.serve.config import LoadConfig

LOCUST_MODULE = "tasks.serve.locustfile"  # run by Locust in its own process, from its path
LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def run_level(base_url: str, api_key: str, model: str, *, users: int, config: LoadConfig) -> dict:
    """Locust's stats entries ("chat", "ttft") and the wall window of one concurrency level."""
    host = base_url.removesuffix("/v1")
    with tempfile.TemporaryDirectory(prefix="slmforge-load-") as tmp:
        env = {**os.environ, "SLMFORGE_LOAD_REQUESTS": str(config.requests), "SLMFORGE_LOAD_MODEL": model,
               "SLMFORGE_LOAD_MAX_TOKENS": str(config.max_tokens), "SLMFORGE_LOAD_PROMPT": config.prompt,
               "SLMFORGE_LOAD_API_KEY": api_key, "SLMFORGE_LOAD_WINDOW": f"{tmp}/window.json",
               "SLMFORGE_LOAD_ERRORS": f"{tmp}/errors.txt"}
        command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
                   "-r", str(users), "-t", f"{int(config.timeout_s)}s", "--host", host, "--json",
                   "--skip-log-setup", "--only-summary", "--exit-code-on-error", "0"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=config.timeout_s + 60)
        if done.returncode != 0:
            raise MeasurementError(f"locust exited with code {done.returncode} at concurrency {users}: "
                                   f"{done.stderr[-1500:]}")
        entries = {entry["name"]: entry for entry in json.loads(done.stdout)}
        window = Path(tmp, "window.json")
        seconds = json.loads(window.read_text())["seconds"] if window.exists() else float(config.timeout_s)
        errors = Path(tmp, "errors.txt")
        first_errors = errors.read_text().splitlines()[:3] if errors.exists() else []
    return {"entries": entries, "seconds": seconds, "first_errors": first_errors}


def percentile(histogram: dict[str, int], fraction: float) -> float:
    """The response time (ms) below which `fraction` of the requests fall, from Locust's histogram
    (it keeps times rounded to 2 significant digits above 100 ms, so this is its resolution too)."""
    points = sorted((float(ms), count) for ms, count in histogram.items())
    total = sum(count for _, count in points)
    if total == 0:
        return float("nan")
    seen = 0
    for ms, count in points:
        seen += count
        if seen >= fraction * total:
            return ms
    return points[-1][0]


def level_metrics(users: int, level: dict, requested: int) -> dict[str, float]:
    """serve_c{users}_*: requests/s, output tokens/s, p50/p95 latency and TTFT, errors."""
    chat = level["entries"].get("chat", {})
    ttft = level["entries"].get("ttft", {})
    done = chat.get("num_requests", 0)
    seconds = max(level["seconds"], 1e-9)
    prefix = f"serve_c{users}_"
    return {
        prefix + "requests_per_s": done / seconds,
        prefix + "output_tps": chat.get("total_content_length", 0) / seconds,
        prefix + "latency_p50_ms": percentile(chat.get("response_times", {}), 0.50),
        prefix + "latency_p95_ms": percentile(chat.get("response_times", {}), 0.95),
        prefix + "ttft_p50_ms": percentile(ttft.get("response_times", {}), 0.50),
        prefix + "ttft_p95_ms": percentile(ttft.get("response_times", {}), 0.95),
        # Requests that failed, plus any the level never completed (stopped by its time limit).
        prefix + "errors": float(chat.get("num_failures", 0) + max(requested - done, 0)),
    }


def single_stream_decode_tps(level: dict) -> float:
    """Tokens after the first / time after the first token, summed over one-user requests: the
    server's decode rate, comparable with the offline `decode_tps` of the same file."""
    chat, ttft = level["entries"].get("chat", {}), level["entries"].get("ttft", {})
    tokens = chat.get("total_content_length", 0) - ttft.get("num_requests", 0)
    seconds = (chat.get("total_response_time", 0) - ttft.get("total_response_time", 0)) / 1000
    return tokens / seconds if seconds > 0 and tokens > 0 else float("nan")


def load_test(base_url: str, api_key: str, model: str, config: LoadConfig) -> tuple[dict[str, float], list[str]]:
    """Every level in turn; the metrics and the first error messages seen."""
    metrics: dict[str, float] = {}
    errors: list[str] = []
    for users in config.concurrency:
        level = run_level(base_url, api_key, model, users=users, config=config)
        metrics.update(level_metrics(users, level, config.requests))
        errors += [f"c={users}: {message}" for message in level["first_errors"]]
        if users == 1:
            metrics["serve_decode_tps"] = single_stream_decode_tps(level)
    metrics["serve_load_errors"] = sum(v for k, v in metrics.items() if k.endswith("_errors"))
    return metrics, errors
