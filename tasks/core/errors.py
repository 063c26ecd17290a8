"""Every error slmforge raises on purpose, in one tree.

    SlmforgeError                 base; message says what failed, the value, what to do
    ├── VariantsFailedError       some variants failed; the others finished (carries the summary)
    ├── UserError                 bad input: never retried, fails the flow fast
    │   ├── ConfigError           config file invalid (all problems listed at once)
    │   ├── SourceError           model source missing, malformed, unsafe or too large
    │   ├── HubAccessError        repo missing, gated or revision unknown
    │   ├── UnsupportedModelError the converter/exporter cannot handle this architecture
    │   ├── CorruptArtifactError  a GGUF or stored artefact is truncated or altered
    │   ├── MeasurementError      a measurement worker failed, was killed (out of memory) or timed out
    │   └── InsufficientMemoryError  a step would not fit in the memory this process may use, with any
    │                             strategy: raised before the step starts (tasks.plan.needs.choose)
    └── TransientError            worth a retry: network hiccup

The Prefect wrappers retry only `TransientError` (see `tasks.prefect_tasks.retry_only_transient`):
a worker killed for memory would be killed again, so it is a MeasurementError, not transient.
"""

from __future__ import annotations


class SlmforgeError(Exception):
    """Base class: the message is shown to the user as-is."""


class VariantsFailedError(SlmforgeError):
    """Some variants failed while the rest finished; `summary` holds the whole run's results."""

    def __init__(self, message: str, summary: dict | None = None) -> None:
        self.summary = summary or {}
        super().__init__(message)


class UserError(SlmforgeError):
    """The input is wrong; retrying cannot help."""


class ConfigError(UserError):
    """A pipeline config failed validation.

    `problems` holds one line per problem so that all of them are reported at once.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"Config {source} has {len(problems)} problem(s):\n{lines}")


class SourceError(UserError):
    """The model source cannot be used as given."""


class HubAccessError(UserError):
    """The hub refused the repository or revision (missing, gated, private)."""


class UnsupportedModelError(UserError):
    """A conversion tool does not support this model's architecture."""


class CorruptArtifactError(UserError):
    """A file is truncated, corrupt or does not match its recorded hash."""


class MeasurementError(UserError):
    """A measurement subprocess failed, was killed or ran out of time; fails its variant only."""


class InsufficientMemoryError(UserError):
    """A step's predicted peak memory exceeds what this process may use (host free memory or its cgroup's
    room), whatever strategy it takes; raised before any work, so nothing is killed halfway."""

    def __init__(self, *, step: str, need_bytes: int, limit, detail: str = "", remedy: str = "") -> None:
        self.step, self.need_bytes, self.limit = step, need_bytes, limit
        detail = f" ({detail})" if detail else ""
        super().__init__(
            f"Step {step!r} needs about {need_bytes / 2**30:.2f} GiB of memory at its peak{detail}, but this "
            f"process may use {limit.describe()}. Nothing was started. To do: {remedy}."
        )


class TransientError(SlmforgeError):
    """A failure that may pass on retry (network)."""
