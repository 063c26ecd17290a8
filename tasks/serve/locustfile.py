"""Locust users for the bounded load test (run by tasks.serve.load in a child process).

Each request streams a chat completion; two Locust entries are fired per request: "chat" (time to
the last token, output tokens as its content length) and "ttft" (time to the first content
chunk). Locust has no request-count limit of its own, so the users share a ticket count and the
last one to finish stops the runner: the level ends by itself after exactly N requests.
Settings come from the environment (the API key too: never on a command line).
"""

from __future__ import annotations

import json
import os
import time

# locust first: it monkey-patches the standard library (gevent), which must precede ssl/requests.
from locust import User, events, task  # isort: skip
from locust.exception import StopUser  # isort: skip
import requests  # isort: skip

_state = {"issued": 0, "finished": 0, "first_start": None, "last_end": None}


def _settings() -> tuple[int, dict, dict]:
    """(request count, request body, headers) from the environment tasks.serve.load sets."""
    body = {"model": os.environ["SLMFORGE_LOAD_MODEL"], "stream": True, "temperature": 0.0,
            "max_tokens": int(os.environ["SLMFORGE_LOAD_MAX_TOKENS"]),
            "messages": [{"role": "user", "content": os.environ["SLMFORGE_LOAD_PROMPT"]}]}
    return (int(os.environ["SLMFORGE_LOAD_REQUESTS"]), body,
            {"Authorization": f"Bearer {os.environ['SLMFORGE_LOAD_API_KEY']}"})


class ChatUser(User):
    """One simulated client: back-to-back streamed chat requests, no think time (a bound on throughput)."""

    def on_start(self) -> None:
        self.session = requests.Session()
        self.total, self.body, self.headers = _settings()

    @task
    def chat(self) -> None:
        if _state["issued"] >= self.total:
            raise StopUser()
        _state["issued"] += 1
        started, first, tokens, error = time.time(), None, 0, None
        clock = time.perf_counter()
        try:
            with self.session.post(f"{self.host}/v1/chat/completions", json=self.body, headers=self.headers,
                                   stream=True, timeout=300) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if not line.startswith(b"data: ") or line == b"data: [DONE]":
                        continue
                    delta = json.loads(line[6:])["choices"][0].get("delta", {})
                    if delta.get("content"):
                        first = first if first is not None else time.perf_counter()
                        tokens += 1  # llama.cpp servers stream one chunk per token
        except (requests.RequestException, ValueError, KeyError) as exc:
            error = exc
        end = time.perf_counter()
        if error is None and first is None:
            error = RuntimeError("no content streamed")
        self._fire("chat", started, (end - clock) * 1000, tokens, error)
        if error is not None and os.environ.get("SLMFORGE_LOAD_ERRORS"):
            with open(os.environ["SLMFORGE_LOAD_ERRORS"], "a") as log:  # why it failed, for the report
                log.write(f"{type(error).__name__}: {error}"[:300] + "\n")
        if first is not None:
            self._fire("ttft", started, (first - clock) * 1000, 0, None)
        _state["finished"] += 1
        _state["first_start"] = min(_state["first_start"] or clock, clock)
        _state["last_end"] = max(_state["last_end"] or end, end)
        if _state["finished"] >= self.total:
            # The level's wall window (first request sent .. last one done): the requests/s denominator.
            with open(os.environ["SLMFORGE_LOAD_WINDOW"], "w") as window:
                json.dump({"seconds": _state["last_end"] - _state["first_start"]}, window)
            self.environment.runner.quit()

    def _fire(self, name: str, started: float, ms: float, length: int, error: Exception | None) -> None:
        events.request.fire(request_type="POST", name=name, start_time=started, response_time=ms,
                            response_length=length, exception=error, context={})
