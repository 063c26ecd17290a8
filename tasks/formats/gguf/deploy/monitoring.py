"""Prometheus scrape config, alert rules and a Grafana dashboard for a served variant.

llama-server (`--metrics`) exports `llamacpp:*` counters and gauges (tokens, busy slots, deferred
requests) but no per-request latency histogram nor error counter; vLLM exports latency histograms
and, through its FastAPI instrumentator, `http_requests_total` by status. So: latency alerts on
llama.cpp use seconds per generated token and queueing, on vLLM the p95 request latency; the error
alert uses vLLM's 5xx rate, and llama.cpp's availability (`up`, its health probe) stands in for it.
Thresholds come from the figures measured through the server here (times a factor).
"""

from __future__ import annotations

import json

import yaml

from tasks.formats.gguf.deploy.config import DeployConfig
from tasks.formats.gguf.deploy.sizing import Sizing

LLAMA_JOB, VLLM_JOB = "slmforge-llama-server", "slmforge-vllm"


def prometheus_config(name: str, config: DeployConfig) -> str:
    def job(job_name: str, service: str) -> dict:
        return {"job_name": job_name, "metrics_path": "/metrics",
                "authorization": {"type": "Bearer", "credentials_file": "slmforge_api_key"},
                # The Service's cluster DNS name (static: Debian's promtool, which checks this file, is
                # built without Kubernetes service discovery).
                "static_configs": [{"targets": [f"{service}.{config.namespace}.svc:{config.port}"]}]}

    # credentials_file is relative to this file: put the API key there as `slmforge_api_key`.
    document = {"global": {"scrape_interval": "15s", "evaluation_interval": "15s"}, "rule_files": ["alerts.yml"],
                "scrape_configs": [job(LLAMA_JOB, name), job(VLLM_JOB, f"{name}-vllm")]}
    return yaml.safe_dump(document, sort_keys=False)


def alert_rules(name: str, sizing: Sizing, metrics: dict, config: DeployConfig) -> str:
    factor = config.latency_alert_factor
    per_token_s = factor / metrics["serve_decode_tps"]
    p95_s = factor * metrics.get("serve_c1_latency_p95_ms", 10_000) / 1000
    memory = 0.9 * sizing.limit_bytes
    rules = [
        _rule("SlmforgeTokenLatencyHigh", f"rate(llamacpp:tokens_predicted_seconds_total{{job=\"{LLAMA_JOB}\"}}[5m]) / "
              f"rate(llamacpp:tokens_predicted_total{{job=\"{LLAMA_JOB}\"}}[5m]) > {per_token_s:.4g}",
              f"{name}: seconds per generated token above {factor}x the measured 1/serve_decode_tps"),
        _rule("SlmforgeRequestsQueued", f"llamacpp:requests_deferred{{job=\"{LLAMA_JOB}\"}} > 0",
              f"{name}: requests wait for a free slot (scale out)", duration="10m"),
        _rule("SlmforgeServerDown", f"up{{job=~\"{LLAMA_JOB}|{VLLM_JOB}\"}} == 0",
              f"{name}: the server does not answer its metrics endpoint", severity="critical", duration="2m"),
        _rule("SlmforgeP95LatencyHigh", "histogram_quantile(0.95, sum by (le) "
              f"(rate(vllm:e2e_request_latency_seconds_bucket{{job=\"{VLLM_JOB}\"}}[5m]))) > {p95_s:.4g}",
              f"{name}: p95 request latency above {factor}x the measured single-user p95"),
        _rule("SlmforgeErrorRateHigh", f"sum(rate(http_requests_total{{job=\"{VLLM_JOB}\",status=\"5xx\"}}[5m])) / "
              f"sum(rate(http_requests_total{{job=\"{VLLM_JOB}\"}}[5m])) > 0.05",
              f"{name}: more than 5% of requests fail"),
        _rule("SlmforgeMemoryNearLimit", f"container_memory_working_set_bytes{{namespace=\"{config.namespace}\","
              f"container=\"llama-server\"}} > {memory:.0f}",
              f"{name}: memory above 90% of the limit (measured peak RSS + KV cache at n_ctx={sizing.n_ctx}, "
              f"x{config.memory_headroom})"),
    ]
    return yaml.safe_dump({"groups": [{"name": f"slmforge-{name}", "rules": rules}]}, sort_keys=False)


def _rule(alert: str, expr: str, summary: str, *, severity: str = "warning", duration: str = "5m") -> dict:
    return {"alert": alert, "expr": expr, "for": duration, "labels": {"severity": severity},
            "annotations": {"summary": summary}}


PANELS = (
    ("Generated tokens/s", f"rate(llamacpp:tokens_predicted_total{{job=\"{LLAMA_JOB}\"}}[5m])", "tokens/s"),
    ("Prompt tokens/s", f"rate(llamacpp:prompt_tokens_total{{job=\"{LLAMA_JOB}\"}}[5m])", "tokens/s"),
    ("Requests processing / deferred", f"llamacpp:requests_processing{{job=\"{LLAMA_JOB}\"}}", "short"),
    ("Seconds per generated token", f"rate(llamacpp:tokens_predicted_seconds_total{{job=\"{LLAMA_JOB}\"}}[5m]) / "
     f"rate(llamacpp:tokens_predicted_total{{job=\"{LLAMA_JOB}\"}}[5m])", "s"),
    ("vLLM p95 latency", f"histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket"
     f"{{job=\"{VLLM_JOB}\"}}[5m])))", "s"),
    ("vLLM time to first token p95", f"histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket"
     f"{{job=\"{VLLM_JOB}\"}}[5m])))", "s"),
    ("Memory working set", "container_memory_working_set_bytes{container=~\"llama-server|vllm\"}", "bytes"),
)


def grafana_dashboard(name: str) -> str:
    """Dashboard JSON (schemaVersion 39) with one time-series panel per served metric."""
    panels = [{"id": i + 1, "type": "timeseries", "title": title,
               "datasource": {"type": "prometheus", "uid": "${datasource}"},
               "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
               "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
               "targets": [{"refId": "A", "expr": expr, "datasource": {"type": "prometheus", "uid": "${datasource}"}}]}
              for i, (title, expr, unit) in enumerate(PANELS)]
    dashboard = {"title": f"slmforge {name}", "uid": f"slmforge-{name}"[:40], "schemaVersion": 39, "version": 1,
                 "editable": True, "time": {"from": "now-6h", "to": "now"}, "tags": ["slmforge", "llm"],
                 "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
                 "panels": panels}
    return json.dumps(dashboard, indent=2)


def panel_expressions(dashboard_json: str) -> list[str]:
    return [t["expr"] for p in json.loads(dashboard_json)["panels"] for t in p["targets"]]
