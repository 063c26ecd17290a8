"""Serve one packaged file, smoke-test its answers, load it: the figures and the verdict, stored.

The result is stored like any step (keyed by the file, the config, the prompt suite, the code and
the tool versions), so a second run of an unchanged config serves nothing again; its figures are
then marked reused. A server that does not start is a failed smoke test, not a stored result.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from pydantic import BaseModel, Field

from tasks.core.errors import SlmforgeError
from tasks.evaluate.prompt_suite import DEFAULT_SUITE, load_prompt_suite
from tasks.serve.config import ServeConfig
from tasks.serve.load import LOCUST_MODULE, load_test
from tasks.serve.server import RunningServer
from tasks.serve.smoke import ask_prompts, judge_smoke
from tasks.store.artifacts import stored_step
from tasks.store.codeid import code_identity
from tasks.store.hashing import sha256_file
from tasks.store.versions import package_version

RESULT = "serve_result.json"


class ServeResult(BaseModel):
    """What serving one variant showed."""

    passed: bool = Field(description="The smoke test passed (the variant may ship).")
    reasons: list[str] = Field(default_factory=list, description="Why the smoke test failed.")
    metrics: dict[str, float] = Field(default_factory=dict, description="serve_* figures (MLflow metrics).")
    answers: list[dict] = Field(default_factory=list, description="The served smoke answers.")
    load_errors: list[str] = Field(default_factory=list, description="First messages of failed load requests.")
    server: str = Field("", description="Which server answered, with its version.")
    reused: bool = False


def serve_and_check(start: Callable[[], AbstractContextManager[RunningServer]], *, identity: dict,
                    offline_rows: list[dict] | None, config: ServeConfig, threads: int,
                    server_label: str, store_root: Path, code_modules: tuple[str, ...]) -> ServeResult:
    """Start the server with `start()`, ask the smoke prompts, run the load test when they pass. The result
    is keyed by the code of `code_modules` too: the caller and the server process it starts, by module."""
    suite_path = config.prompts_file or DEFAULT_SUITE
    suite = load_prompt_suite(suite_path)
    material = {"identity": identity, "config": config.model_dump(mode="json"), "suite": sha256_file(suite_path),
                "server": server_label, "locust": package_version("locust"), "openai": package_version("openai"),
                "code": code_identity(__name__, LOCUST_MODULE, *code_modules)}

    def build(tmp: Path) -> None:
        with start() as server:
            rows = ask_prompts(server.base_url, server.api_key, server.model, suite.prompts[: config.smoke_prompts],
                               max_tokens=suite.max_tokens, timeout_s=config.request_timeout_s)
            metrics, reasons = judge_smoke(rows, offline_rows, max_lost_answers=config.max_lost_answers)
            metrics["serve_startup_s"] = server.startup_s
            metrics["serve_threads"] = float(threads)
            load_errors: list[str] = []
            if not reasons and config.load.enabled:
                load_metrics, load_errors = load_test(server.base_url, server.api_key, server.model, config.load)
                metrics.update(load_metrics)
                if load_metrics["serve_load_errors"] > config.load.max_errors:
                    reasons.append(f"{load_metrics['serve_load_errors']:.0f} load request(s) failed "
                                   f"(allowed: serve.load.max_errors={config.load.max_errors}): {load_errors[:1]}")
                    metrics["serve_smoke_pass"] = 0.0
        result = ServeResult(passed=not reasons, reasons=reasons, metrics=metrics, answers=rows,
                             load_errors=load_errors, server=server_label)
        (tmp / RESULT).write_text(result.model_dump_json(indent=2))

    try:
        stored = stored_step(store_root, "serve", material, build)
    except (SlmforgeError, OSError) as exc:  # the server never answered: the variant is not proven
        return ServeResult(passed=False, reasons=[f"serving failed: {exc}"],
                           metrics={"serve_smoke_pass": 0.0, "serve_threads": float(threads)},
                           server=server_label)
    result = ServeResult.model_validate(json.loads((stored.path / RESULT).read_text()))
    return result.model_copy(update={"reused": stored.reused})
