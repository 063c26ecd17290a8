"""A whole run priced before it starts: per step, the strategy that fits, its time, peak memory and disk.

`plan_run` walks the steps a config will take (acquire, convert, imatrix, each build, the reference pass,
each measurement, each served variant) and asks `tasks.plan.needs` for their peaks and `tasks.plan.costs`
for their times. A step that fits with no strategy is a problem: `slmforge plan` shows it, `slmforge run`
refuses to start. Pure: the shape, the limit, the free disk and the cost model are passed in.

Not every step runs alone: the builds run side by side (`builds` slots) and beside the reference pass. The
run's peak is the larger of the largest step and the worst moment of that phase (the reference pass and
the largest builds, as many as there are slots). Where that moment would not fit but each step does, the
run still fits: each step is admitted against what the running ones may still take (tasks.plan.ledger),
so they wait and run one at a time; the plan says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.plan import needs as N
from tasks.plan.costs import GGUF_BPW, ONNX_BPW, CostModel
from tasks.plan.learned import as_measured, factor_for
from tasks.plan.limits import MemoryLimit, gib
from tasks.plan.shapes import ModelShape

# What holds a format's model while it is measured or served (the KV-cache formula is llama.cpp's; ONNX
# Runtime GenAI's cache is the same size for the same shape).
RUNTIMES = {"gguf": "llama.cpp", "onnx": "onnxruntime-genai"}


@dataclass(frozen=True)
class PlanRow:
    step: str
    strategy: str
    seconds: float
    peak_bytes: int
    disk_bytes: int
    fits: bool
    note: str = ""


@dataclass(frozen=True)
class SideBySide:
    """The worst moment of the phase whose steps run together: which steps, and their peaks summed."""

    steps: tuple[str, ...]
    peak_bytes: int
    fits: bool  # each with its safety margin, as the ledger admits them


@dataclass
class Plan:
    model: ModelShape
    limit: MemoryLimit
    disk_free_bytes: int
    rows: list[PlanRow] = field(default_factory=list)
    side_by_side: SideBySide | None = None

    @property
    def total_seconds(self) -> float:
        return sum(r.seconds for r in self.rows)

    @property
    def peak_bytes(self) -> int:
        """The run's peak: the largest step, or the steps side by side where they fit together (where they
        do not, they wait for each other and the largest step is the peak)."""
        largest = max((r.peak_bytes for r in self.rows), default=0)
        together = self.side_by_side
        return max(largest, together.peak_bytes) if together is not None and together.fits else largest

    def peak_note(self) -> str:
        together = self.side_by_side
        if together is None:
            return "peak = the largest step (no steps side by side)"
        names = " + ".join(together.steps)
        if together.fits:
            return f"peak = {names} side by side"
        return (f"{names} side by side would need {gib(together.peak_bytes)}: they wait for memory and run one "
                "at a time; peak = the largest step")

    @property
    def disk_bytes(self) -> int:
        return sum(r.disk_bytes for r in self.rows)

    def problems(self) -> list[str]:
        """One line per thing that would stop the run: a step that fits no strategy, the disk."""
        out = [f"{r.step}: needs {gib(r.peak_bytes)} of memory ({r.strategy}; {N.SAFETY:.2f}x to start), this process may use "
               f"{gib(self.limit.available_bytes)}" for r in self.rows if not r.fits]
        if self.disk_bytes > self.disk_free_bytes:
            out.append(f"disk: the run writes about {gib(self.disk_bytes)}, the store's file system has "
                       f"{gib(self.disk_free_bytes)} free")
        return out


def plan_run(config, shape: ModelShape, *, limit: MemoryLimit, disk_free_bytes: int, cost: CostModel) -> Plan:
    """Every step of a run of `config` on a model of `shape`, on this host."""
    plan = Plan(model=shape, limit=limit, disk_free_bytes=disk_free_bytes)
    ev = config.evaluate
    chunks = ev.reference_chunks()
    hf_dtype = _acquire(plan, config, shape, cost)
    plan.rows.append(_row(N.convert_need(shape, N.DTYPE_BYTES[hf_dtype], config.convert.outtype), limit, cost, shape))
    variants = _variants(config)
    if any(imatrix for _, _, _, imatrix in variants):
        need = N.imatrix_need(shape, n_ctx=config.formats["gguf"].calibration.n_ctx)
        plan.rows.append(_row(need, limit, cost, shape, chunks=config.formats["gguf"].calibration.chunks))
    for fmt, label, bpw, _ in variants:
        need = (N.onnx_export_need(shape, label, N.DTYPE_BYTES[hf_dtype]) if fmt == "onnx"
                else N.quantize_need(shape, bpw, label))
        plan.rows.append(_row(need.__class__(f"build {fmt} {label}", need.strategy, need.peak_bytes, need.disk_bytes),
                              limit, cost, shape))
    plan.rows.append(_row(N.reference_need(shape, n_ctx=ev.n_ctx, chunks=chunks), limit, cost, shape, chunks=chunks))
    plan.side_by_side = _side_by_side(plan.rows, slots=_build_slots(config), limit=limit)
    speed_ctx = ev.prefill_tokens + ev.decode_tokens + max(ev.depths, default=0)

    def model_bytes(fmt: str, label: str, bpw: float) -> int:
        # An ONNX int4 folder keeps the vocabulary matrices at 16 bits: its export's own prediction.
        if fmt == "onnx":
            return N.onnx_export_need(shape, label, N.DTYPE_BYTES[hf_dtype]).disk_bytes
        return int(shape.n_weights * bpw / 8)

    for fmt, label, bpw, _ in [("gguf", "F16", 16.0, False), *variants]:
        anchored = label != "F16" and ev.speed_anchor  # the f16 timed beside it, in its own process
        need = N.measure_need(shape, variant=f"{fmt} {label}", model_bytes=model_bytes(fmt, label, bpw),
                              n_ctx=ev.n_ctx, speed_ctx=speed_ctx, quality=label != "F16",
                              anchor_bytes=shape.n_weights * 2 if anchored else 0)
        need = N.Need(need.step, RUNTIMES.get(fmt, fmt), need.peak_bytes, need.disk_bytes)
        plan.rows.append(_row(need, limit, cost, shape, chunks=chunks))
        if ev.humaneval is not None:  # greedy completions in one process at HumanEval's context
            need = N.llama_pass_need(f"humaneval {fmt} {label}", shape, kind="serve", model_bytes=model_bytes(fmt, label, bpw),
                                     n_ctx=ev.humaneval.n_ctx, logits_rows=1, quant=label)
            need = N.Need(need.step, RUNTIMES.get(fmt, fmt), need.peak_bytes, 0)
            plan.rows.append(_row(need, limit, cost, shape, chunks=ev.humaneval.problems.size()))
    # The f16 reference passes its own gate and is served and packaged like any variant of its format.
    reference = [("gguf", "F16", 16.0, False)] if "gguf" in config.formats else []
    for fmt, label, bpw, _ in [*reference, *variants]:
        serve = getattr(config.formats[fmt], "serve", None)
        if serve is not None and serve.enabled:
            need = N.serve_need(shape, variant=f"{fmt} {label}", model_bytes=model_bytes(fmt, label, bpw),
                                n_ctx=serve.n_ctx)
            need = N.Need(need.step, RUNTIMES.get(fmt, fmt), need.peak_bytes, need.disk_bytes)
            plan.rows.append(_row(need, limit, cost, shape))
    return plan


def _build_slots(config) -> int:
    """How many builds run at once (tasks.remote.build_runner): the threads, or Dask's workers."""
    builds = config.builds
    return builds.dask_workers if builds.runner == "dask" else builds.threads


def _side_by_side(rows: list[PlanRow], *, slots: int, limit: MemoryLimit) -> SideBySide | None:
    """The worst moment of the builds phase: the reference pass beside the `slots` largest builds (the
    importance matrix runs inside a build: it takes that build's slot)."""
    builds = sorted((r for r in rows if r.step.startswith(("build ", "imatrix"))), key=lambda r: r.peak_bytes)
    reference = [r for r in rows if r.step == "reference pass"]
    together = reference + builds[-slots:]
    if len(together) < 2:
        return None
    peak = sum(r.peak_bytes for r in together)
    return SideBySide(steps=tuple(r.step for r in together), peak_bytes=peak,
                      fits=sum(r.peak_bytes * N.SAFETY for r in together) <= limit.available_bytes)


def _acquire(plan: Plan, config, shape: ModelShape, cost: CostModel) -> str:
    """The acquire row (the first dequantize strategy that fits); returns the dtype of the HF weights."""
    if config.source.kind != "gguf":
        plan.rows.append(_row(N.Need("acquire", "download/read", N.TORCH_PROCESS, shape.source_bytes),
                              plan.limit, cost, shape))
        return "bfloat16"
    options = N.dequantize_needs(shape, config.acquire.dequantize_dtype)
    chosen = next((n for n in options if N.fits(n, plan.limit)), None)
    need = chosen or min(options, key=lambda n: n.peak_bytes)
    note = "" if need is options[0] else f"instead of {options[0].strategy} ({gib(options[0].peak_bytes)}): {need.note}"
    plan.rows.append(_row(need, plan.limit, cost, shape, note=note))
    return need.strategy.split("-", 1)[1]


def _row(need: N.Need, limit: MemoryLimit, cost: CostModel, shape: ModelShape, *, chunks: int = 1,
         note: str = "") -> PlanRow:
    measured = as_measured(need, factor_for(cost.memory_factors, need.step))  # as the run will admit it
    if measured is not need:  # the formula's own note (or the caller's), then the host's factor
        note = "; ".join(filter(None, (note, measured.note)))
    seconds = cost.step_seconds(need.step, shape.n_weights, chunks=chunks)
    return PlanRow(step=need.step, strategy=need.strategy, seconds=seconds, peak_bytes=measured.peak_bytes,
                   disk_bytes=need.disk_bytes, fits=N.fits(measured, limit), note=note or need.note)


def _variants(config) -> list[tuple[str, str, float, bool]]:
    """(format, label, bits per weight, uses the imatrix) of every configured variant."""
    out = []
    gguf = config.formats.get("gguf")
    if gguf is not None:
        for recipe in gguf.recipes():
            out.append(("gguf", recipe.label, GGUF_BPW.get(recipe.type, 8.5), recipe.imatrix))
        for target in gguf.targets:
            out.append(("gguf", target.label(), target.bpw or 4.85, target.imatrix))
    onnx = config.formats.get("onnx")
    if onnx is not None:
        for precision in onnx.precisions:
            bpw = ONNX_BPW.get(precision, 16.0)
            out.append(("onnx", precision, bpw, False))
    return out
