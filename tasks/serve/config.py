"""The `formats.<name>.serve` section: how a packaged variant is served, smoke-tested and loaded.

The defaults keep the cost of the default run small (it serves every passing GGUF variant): a few
checkable prompts, a few short requests per concurrency level.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class LoadConfig(BaseModel):
    """A bounded load test: a fixed number of requests at each concurrency level, then it stops."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(True, description="Run the load test after a passing smoke test.")
    concurrency: list[int] = Field(default_factory=lambda: [1, 2, 4], description="Simultaneous users per level.")
    requests: int = Field(8, ge=1, le=10_000, description="Requests sent at each level (then the level stops).")
    max_tokens: int = Field(16, ge=1, le=4096, description="Output tokens asked per request (streamed).")
    prompt: str = Field("Write one sentence about the sea.", min_length=1,
                        description="The user message of every load request.")
    timeout_s: float = Field(300, gt=0, description="Wall-clock limit of one level before it is stopped.")
    max_errors: int = Field(0, ge=0, description="Failed requests over all levels before the check fails.")

    @field_validator("concurrency")
    @classmethod
    def _positive(cls, levels: list[int]) -> list[int]:
        if not levels or any(level < 1 for level in levels):
            raise ValueError(f"concurrency levels must be >= 1 and at least one is needed; got {levels}")
        return levels


class ServeConfig(BaseModel):
    """Serve each passing variant on loopback, check its answers, load it; a failed smoke test fails its gate."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(True, description="Serve and check every passing variant before packaging it.")
    smoke_prompts: int = Field(6, ge=1, description="How many prompts of the prompt suite the smoke test asks.")
    prompts_file: Path | None = Field(None, description="Prompt suite (default: configs/prompts/default.yaml).")
    # 1, not 0: the server evaluates a prompt in other batch shapes than the offline worker, and a
    # low-bit quant's greedy path can then part on one prompt (seen in the default run: Q4_0 and
    # Q4_K_M-imat each lost 1 of 6, their offline answers unchanged); a wrong template loses most.
    max_lost_answers: int = Field(1, ge=0, description=(
        "How many smoke prompts the server may answer wrongly that the same file answered rightly "
        "offline (greedy, same template) before the smoke test fails."))
    # The load client (Locust) and the server's HTTP side run on the same host as the decode
    # threads. Measured on 2 cores (tests/benchmarks/bench_served_vs_offline.py, SmolLM2-135M):
    # with both cores decoding, served/offline was 0.45-0.62 and moved 25 % between rounds; with
    # one core left to them, 0.81, within 5 %.
    threads: int | None = Field(None, ge=1, description=(
        "Threads the server decodes with; default: the measurement's threads minus one (at least 1), "
        "leaving a core to the load client and the server's HTTP side on the same host."))
    n_ctx: int = Field(2048, ge=256, description="Context the server allocates (also the KV cache of deployments).")
    startup_timeout_s: float = Field(120, gt=0, description="How long to wait for the server to answer.")
    request_timeout_s: float = Field(120, gt=0, description="Limit of one smoke request.")
    load: LoadConfig = Field(default_factory=LoadConfig, description="The bounded load test.")

    def server_threads(self, measure_threads: int) -> int:
        """The decode threads of the served check, given the threads the variant was measured with."""
        return self.threads if self.threads is not None else max(1, measure_threads - 1)
