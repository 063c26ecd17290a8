"""Each step's measured wall time and peak memory, recorded on every run so the cost model learns.

`StepMeter` times a step and samples the resident memory of the processes it starts (and of this
process above where it stood when the step began) every quarter second; the records land as JSON under
`<store>/plan/runs/`, each step as it finishes (`keep_run_record`: a run stopped after hours keeps what it
measured), and at the run's end as `step.<name>.wall_s` / `step.<name>.peak_rss_bytes` metrics on the
MLflow parent run (tasks.tracking.report.log_step_records).

Steps run side by side (two builds and the reference pass share the cores), so a step's wall time says
as much about its neighbours as about its own work. Each record also carries the step's *share of the
host*: every moment is split evenly among the metered steps running then. The shares of a run add up to
the wall time its metered steps took, which is what the cost model learns and the plan predicts.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict, Field

from tasks.hosts.hostlock import STEP_ENV, working_for
from tasks.plan.costs import step_units
from tasks.plan.learned import factor_for, memory_factors
from tasks.plan.ledger import StepHolder, holding
from tasks.plan.probe import HostProbe

SAMPLE_S = 0.25


class StepRecord(BaseModel):
    """One step of one run as measured."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    step: str = Field(description="Step name as the plan names it, e.g. 'acquire', 'reference pass'.")
    wall_s: float = Field(ge=0)
    peak_rss_bytes: int = Field(ge=0, description="Peak of this step's processes' resident memory, summed.")
    units: float = Field(gt=0, description="Work done in the cost model's units (billions of weights x chunks...).")
    predicted_peak_bytes: int | None = Field(None, description="What the plan predicted for this step.")
    strategy: str | None = None
    reused: bool = Field(False, description="Taken from the store: not a measure of the work (the model skips it).")
    share_s: float | None = Field(None, ge=0, description=(
        "The step's share of the host: its wall time with every moment split evenly among the metered steps "
        "running then (None in records written before shares were kept: the cost model takes wall_s)."))
    memory_wait_s: float = Field(0.0, ge=0, description=(
        "Time it waited for memory held by steps beside it (tasks.plan.ledger); not in wall_s or share_s."))


class RunRecord(BaseModel):
    """Every step of one run, with where it ran and on what model."""

    model_config = ConfigDict(extra="forbid")
    hardware_id: str
    model: str
    n_weights: int
    recorded_at: float = Field(default_factory=time.time)
    steps: list[StepRecord] = Field(default_factory=list)
    probe: HostProbe | None = Field(None, description=(
        "The host's probe (tasks/plan/probe.py): another host's plan scales these times by it."))
    protocol: str | None = Field(None, description=(
        "The evaluation protocol the run measured with (evaluation_protocol): a measure's or reference "
        "pass's time is learned only by plans of the same protocol (None: recorded before it was kept)."))


def evaluation_protocol(evaluate) -> str:
    """The identity of what a measure and a reference pass do besides the model and the chunk count: the
    speed tests (their tokens, repetitions, depths), the chunk length and cap, the domains, the served
    prompts. Their units count the model's bytes and the chunks, not these: a quick run's measure (pp128,
    tg32, 2 chunks of one text) taught the plan of a full run (pp512, tg128, 8 chunks of four domains)
    x0.3 of its real time."""
    fields = ("n_ctx", "max_chunks", "domains", "threads", "prefill_tokens", "decode_tokens", "repetitions",
              "depths", "ttft_prompt_tokens", "speed_anchor", "prompt_suite")
    dumped = evaluate.model_dump(mode="json", include=set(fields))
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:16]


def records_dir(store_root: Path) -> Path:
    return store_root / "plan" / "runs"


def save_run_record(store_root: Path, record: RunRecord, path: Path | None = None) -> Path:
    """Write atomically (temporary file, then rename): a reader never sees half a record. `path` rewrites
    an earlier record of the same run (a new name otherwise)."""
    folder = records_dir(store_root)
    folder.mkdir(parents=True, exist_ok=True)
    path = path or folder / f"{int(record.recorded_at)}-{uuid.uuid4().hex[:8]}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(record.model_dump_json(indent=1))
    os.replace(tmp, path)
    return path


def load_run_records(store_root: Path) -> list[RunRecord]:
    """Every recorded run under the store; an unreadable file is skipped (a record is never worth a failure)."""
    out = []
    for path in sorted(records_dir(store_root).glob("*.json")):
        try:
            out.append(RunRecord.model_validate(json.loads(path.read_text())))
        except (ValueError, OSError):
            continue
    return out


class StepMeter:
    """Context manager: wall time and sampled peak RSS of the work done inside it.

    Counted: every descendant process of this one started during the step (steps run their heavy work in
    children) plus this process's own growth since the step began (in-process work such as quantize).
    Steps run side by side (builds beside the reference pass): a child that carries another step's
    token (STEP_ENV, given by hostlock.child_env) is that step's and is not counted here; one without a
    token is counted by every step open (an upper bound of the step's own).
    """

    def __init__(self, token: str | None = None) -> None:
        self._token = token
        self._owners: dict[int, str | None] = {}  # pid -> the step token it carries (read once)
        self._me = psutil.Process()
        self._start_rss = self._me.memory_info().rss
        # Children already running belong to something else (the temporary Prefect server, another step).
        self._others = {child.pid for child in self._me.children(recursive=True)}
        self.peak_rss_bytes = 0
        self.current_rss_bytes = 0  # the last sample: what the step's processes use now
        self.wall_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, daemon=True, name="step-meter")

    def __enter__(self) -> StepMeter:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sample()
        self.wall_s = time.perf_counter() - self._t0

    def _sample_loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample()

    def _sample(self) -> None:
        total = max(self._me.memory_info().rss - self._start_rss, 0)
        for child in self._me.children(recursive=True):
            if child.pid in self._others or not self._mine(child):
                continue
            try:
                total += child.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        self.current_rss_bytes = total
        self.peak_rss_bytes = max(self.peak_rss_bytes, total)

    def _mine(self, child: psutil.Process) -> bool:
        if child.pid not in self._owners:
            try:
                self._owners[child.pid] = child.environ().get(STEP_ENV)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
                self._owners[child.pid] = None
        owner = self._owners[child.pid]
        return owner is None or self._token is None or owner == self._token


class StepNote:
    """What a metered step tells the meter once it knows (its model size, whether it reused its result)."""

    def __init__(self) -> None:
        self.n_weights = 0
        self.chunks = 1
        self.reused = False
        self.strategy: str | None = None
        self.predicted_peak_bytes: int | None = None


_collected: dict[str, list[StepRecord]] = {}
_collected_lock = threading.Lock()
_kept: dict[str, tuple[Path, RunRecord, Path]] = {}  # run key -> (store root, header, its record's path)
_factors: dict[str, dict[str, float]] = {}  # run key -> this host's learned memory factors (read once)


@dataclass(eq=False)  # hashed by identity: the set of running steps holds them
class _Open:
    """A step being metered on this thread, the time its metered sub-steps took, and its share so far."""

    run_key: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    inner_wall_s: float = 0.0
    share_s: float = 0.0
    memory_wait_s: float = 0.0
    predicted_peak_bytes: int | None = None  # the formula's, for the strategy its guard admitted


class _HostShares:
    """Splits wall time evenly among the steps running at each moment, across threads. A step that has
    opened a sub-step on its thread is paused while the sub-step runs (the sub-step does that work)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[_Open] = set()
        self._since = time.perf_counter()

    def _advance(self) -> None:
        now = time.perf_counter()
        if self._running:
            each = (now - self._since) / len(self._running)
            for step in self._running:
                step.share_s += each
        self._since = now

    def start(self, step: _Open, *, pausing: _Open | None) -> None:
        with self._lock:
            self._advance()
            self._running.discard(pausing)
            self._running.add(step)

    def stop(self, step: _Open, *, resuming: _Open | None) -> None:
        with self._lock:
            self._advance()
            self._running.discard(step)
            if resuming is not None:
                self._running.add(resuming)


_shares = _HostShares()


_open = threading.local()  # per thread (steps run on a thread pool): the steps open on it, innermost last


def _open_steps() -> list[_Open]:
    if not hasattr(_open, "steps"):
        _open.steps = []
    return _open.steps


@contextmanager
def metered(run_key: str, step: str) -> Iterator[StepNote]:
    """Meter one step of run `run_key` (the flow run id); the record joins that run's list, which the
    flow takes at its end (`take_records`). Steps run on a thread pool: the list is locked. A step
    metered inside another (`metered_within`) is recorded on its own and its time is taken out of
    the enclosing step's: each kind of work is priced by its own records."""
    note, opened, stack = StepNote(), _Open(run_key), _open_steps()
    enclosing = stack[-1] if stack else None
    stack.append(opened)
    try:
        with StepMeter(opened.token) as meter, working_for(opened.token), \
                holding(_holder(opened, meter)):  # the memory promised to it, released when it ends
            _shares.start(opened, pausing=enclosing)
            try:
                yield note
            finally:
                _shares.stop(opened, resuming=enclosing)
    finally:
        stack.pop()
        if enclosing is not None:
            enclosing.inner_wall_s += meter.wall_s
    if note.n_weights <= 0:
        return
    wall_s = max(meter.wall_s - opened.inner_wall_s, 0.0)
    record = StepRecord(step=step, wall_s=round(wall_s, 3), peak_rss_bytes=meter.peak_rss_bytes,
                        units=step_units(step, note.n_weights, chunks=note.chunks), reused=note.reused,
                        strategy=note.strategy,
                        predicted_peak_bytes=note.predicted_peak_bytes or opened.predicted_peak_bytes,
                        share_s=round(opened.share_s, 3), memory_wait_s=round(opened.memory_wait_s, 3))
    with _collected_lock:
        _collected.setdefault(run_key, []).append(record)
        _write_kept(run_key)


def _holder(step: _Open, meter: StepMeter) -> StepHolder:
    """How the ledger sees a metered step: what its processes use now, and a wait for memory taken out of
    its wall time and its share of the host (waiting is not its work), recorded on its own."""
    def waited(seconds: float) -> None:
        _shares.start(step, pausing=None)
        step.inner_wall_s += seconds
        step.memory_wait_s += seconds

    def admitted(peak_bytes: int) -> None:
        step.predicted_peak_bytes = peak_bytes

    return StepHolder(token=step.token, in_use=lambda: meter.current_rss_bytes,
                      pause=lambda: _shares.stop(step, resuming=None), resume=waited, admitted=admitted,
                      factor=lambda name: factor_for(_learned_factors(step.run_key), name))


def _learned_factors(run_key: str) -> dict[str, float]:
    """What this host's recorded runs measured above the formulas (tasks.plan.learned), read once per run
    from the store its record is kept in (none before the model is known: acquire)."""
    with _collected_lock:
        kept = _kept.get(run_key)
        if kept is None:
            return {}
        if run_key not in _factors:
            store_root, header, _ = kept
            _factors[run_key] = memory_factors(load_run_records(store_root), header.hardware_id)
        return _factors[run_key]


@contextmanager
def metered_within(step: str) -> Iterator[StepNote]:
    """Meter a sub-step of the step this thread is metering, as a step of the same run: the importance
    matrix, computed inside the first build that needs it, would otherwise price every GGUF build.
    Outside a metered step (a core called directly) nothing is recorded."""
    stack = _open_steps()
    if not stack:
        yield StepNote()
        return
    with metered(stack[-1].run_key, step) as note:
        yield note


def keep_run_record(run_key: str, store_root: Path, *, hardware_id: str, model: str, n_weights: int,
                    probe: HostProbe | None = None, protocol: str | None = None) -> Path:
    """From now on, write run `run_key`'s record to the store each time one of its steps finishes (and
    now, with the steps finished so far). Called once the model is known (after acquire). A run stopped
    or killed halfway keeps every step it finished: the record was once written only at the run's end,
    and a HumanEval run stopped after two hours left the cost model nothing."""
    header = RunRecord(hardware_id=hardware_id, model=model, n_weights=n_weights, probe=probe, protocol=protocol)
    path = records_dir(store_root) / f"{int(header.recorded_at)}-{uuid.uuid4().hex[:8]}.json"
    with _collected_lock:
        _kept[run_key] = (store_root, header, path)
        _write_kept(run_key)
    return path


def _write_kept(run_key: str) -> None:
    """Under `_collected_lock`: rewrite the run's kept record with every step finished so far."""
    if run_key not in _kept or not _collected.get(run_key):
        return
    store_root, header, path = _kept[run_key]
    record = header.model_copy(update={"steps": list(_collected[run_key])})
    try:
        save_run_record(store_root, record, path)
    except OSError:
        pass  # a record is never worth a failed step (a full disk shows in the step that writes next)


def take_records(run_key: str) -> list[StepRecord]:
    """The run's step records, for its MLflow metrics; the run stops keeping its record (it is complete)."""
    with _collected_lock:
        _kept.pop(run_key, None)
        _factors.pop(run_key, None)
        return _collected.pop(run_key, [])
