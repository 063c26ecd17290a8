"""Time of each step: a fixed cost plus seconds per unit of work, learned from this host's recorded runs.

A step's work is counted in units that its time grows with (billions of weights for the weight-bound
steps; billions of weights x chunks for the passes over text), so a rate measured on a 135M model
prices a 1.5B or a 14B. Every step also pays a cost that does not grow with the model (a process
started, torch or a runtime imported, files hashed): on a 135M model that is most of a step's time, and
a rate through the origin learned there would price a 1.5B's steps several times too high. Where the
records hold the step at sizes at least twice apart, a line is fitted (fixed seconds + seconds per
unit); otherwise the rate is the ratio of sums. The time learned is each step's share of the host
(records.py): steps run side by side split the time they share, so the plan's steps add up to the run.
Rates come, in order, from this host's records, any host's records, or the built-in defaults below.
The built-in lines of the steps that run a model, and other hosts' records of them, are scaled by this
host's probe against theirs (tasks/plan/probe.py): prefill for the passes over text, decode for the
steps that generate. Pure: the records and the probe are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # records are built with step_units from here: at run time this module needs none
    from tasks.plan.probe import HostProbe
    from tasks.plan.records import RunRecord

# (fixed seconds, seconds per unit) of each kind of step on the host of BUILT_IN_PROBE, keyed by kind or
# by a narrower step_key ("build gguf q4_k_m") where types of a kind differ: the lines through two runs
# on it at sizes 13x apart, the default config's cold run (SmolLM2-135M, a newcomer's first `make run`,
# 16 min 34 s) and configs/qwen2.5-coder-1.5b.yaml's (1 h 25 min), and HumanEval's from five problems
# of the 1.5B's f16 and Q8_0, printed by tests/benchmarks/fit_plan_defaults.py. A kind fitted with no
# fixed cost had its line through both sizes come out negative at zero: it is priced through the
# origin. These lines also give a kind that this host's records hold at one size only its shape
# (CostModel._learn).
KINDS = ("acquire", "convert", "build gguf", "build onnx", "imatrix", "reference pass", "measure", "serve",
         "humaneval")
# Kinds priced on the bytes of the model they read per token (decoding is bound by memory bandwidth).
ON_MODEL_BYTES = ("measure", "serve", "humaneval")
DEFAULT_COSTS: dict[str, tuple[float, float]] = {
    "acquire": (17.7, 38.17),
    "convert": (11.3, 8.19),
    "build gguf": (0.0, 32.91),
    "build gguf q4_0": (0.0, 7.96),
    "build gguf q4_k_m": (0.0, 40.25),
    "build gguf q4_k_m-imat": (0.0, 71.57),
    "build gguf q8_0": (0.0, 10.10),
    "build onnx": (17.4, 24.56),
    "build onnx int4": (17.4, 24.56),
    "imatrix": (23.1, 5.44),
    "reference pass": (48.8, 4.98),
    "measure": (97.7, 217.99),
    # The f16's measure times speed only (its quality is the reference pass): one worker started, not
    # two, so its own fixed cost (one shared with the other types priced SmolLM2's at 3.5x).
    "measure gguf f16": (13.8, 37.50),
    "measure gguf q4_0": (97.7, 218.23),
    "measure gguf q4_k_m": (97.7, 261.88),
    "measure gguf q4_k_m-imat": (97.7, 197.50),
    "measure gguf q8_0": (97.7, 185.46),
    "measure onnx int4": (97.7, 311.06),
    "serve": (17.6, 41.00),
    "serve gguf f16": (17.6, 31.16),
    "serve gguf q4_k_m": (17.6, 51.26),
    "serve gguf q4_k_m-imat": (17.6, 42.52),
    "serve gguf q8_0": (17.6, 34.53),
    "serve onnx int4": (17.6, 67.69),
    # Seconds per problem per GB of weights: the 1.5B's f16 (3.55 GB) took 51 s a problem and its Q8_0
    # (1.89 GB) 28 s on HumanEval/0 to /4 (prompt, greedy completion up to the closing fence).
    "humaneval": (0.0, 14.56),
}
# The probe (tasks/plan/probe.py) on the host of DEFAULT_COSTS, quiet: the median of seven probes
# (2026-12-04, a 2-core AMD EPYC with AVX2 and no AVX-512; prefill 250 to 283, decode 110 to 136 tok/s:
# one probe is good to about 10 %).
BUILT_IN_PROBE = {"prefill_tps": 276.6, "decode_tps": 128.3}
# Which of the probe's figures a kind of step moves with: the passes over text with prefill, the steps
# that generate with decode; the steps that run no model (acquire, convert, builds) are not scaled.
PROBE_FIGURE = {"imatrix": "prefill_tps", "reference pass": "prefill_tps", "measure": "prefill_tps",
                "serve": "decode_tps", "humaneval": "decode_tps"}
# The speed tests (pp, tg, ttft, depths) cost about as much as this many quality chunks at n_ctx 512.
SPEED_CHUNK_EQUIVALENTS = 4


# Bits per weight of llama.cpp's file types on a Llama-shaped model (llama-quantize's own table), and of
# the ONNX precisions: what a measure's speed tests and a served model read per token.
GGUF_BPW = {"F16": 16.0, "BF16": 16.0, "F32": 32.0, "Q8_0": 8.5, "Q6_K": 6.56, "Q5_K_M": 5.69, "Q5_K_S": 5.54,
            "Q5_0": 5.5, "Q5_1": 6.0, "Q4_K_M": 4.85, "Q4_K_S": 4.58, "Q4_0": 4.55, "Q4_1": 5.0, "IQ4_XS": 4.25,
            "IQ4_NL": 4.5, "Q3_K_M": 3.91, "Q3_K_S": 3.5, "Q3_K_L": 4.27, "Q2_K": 2.96, "Q2_K_S": 2.6}
ONNX_BPW = {"int4": 4.5, "int8": 8.5, "fp16": 16.0, "fp32": 32.0}
# Kinds priced on the bytes of the model they read: their types differ mostly by those bytes, which the
# units already count, so a type seen at one size only takes its kind's line (a type's own rate from
# one micro model's serve overpriced a 1.5B's Q4_K_M serve 1.7x; the kind's line on bytes: within 16 %).
BY_BYTES = ("serve",)
# A kind seen at one size only takes the shape (fixed cost against rate) of a kind doing the same work:
# llama-imatrix is a forward pass over text chunks, as the reference pass is (measured on the 1.5B:
# 5.1 and 5.3 s per billion weights x chunk; on the 135M, 8.3 and 7.8).
LIKE = {"imatrix": "reference pass"}
BASE_QUANTS = ("f16", "bf16", "f32")  # the reference a GGUF run measures: speed only (its quality is the reference pass)
# Kinds whose time depends on the evaluation protocol beyond their units (records.evaluation_protocol):
# learned only from runs of the plan's own protocol; the others (builds, serving, HumanEval) from any.
BY_PROTOCOL = ("reference pass", "measure")
FORMATS = ("gguf", "onnx")  # the formats whose measure and serve records name them as `<model>-<format>-<quant>`


def kind_of(step: str) -> str:
    """'build gguf Q4_K_M' -> 'build gguf', 'measure x-gguf-Q8_0' -> 'measure': the cost model's step kinds."""
    for kind in KINDS:
        if step == kind or step.startswith(kind + " "):
            return kind
    return step


def step_key(step: str) -> str:
    """The work a step does, whatever the model: 'build gguf q4_k_m', 'measure gguf q8_0' (plan rows are
    named `measure gguf Q8_0`, run records `measure <model>-gguf-q8_0`), or the kind where nothing
    narrower applies. Types of one kind cost differently (a K-quant takes 4x a Q8_0's time to build;
    an f16 measure times speed only): each is priced by its own records where there are some."""
    kind = kind_of(step)
    rest = step[len(kind):].strip().lower()
    if not rest:
        return kind
    if kind in ON_MODEL_BYTES:
        for fmt in FORMATS:
            if rest.startswith(fmt + " "):
                return f"{kind} {rest}"
            if f"-{fmt}-" in rest:
                return f"{kind} {fmt} {rest.rsplit(f'-{fmt}-', 1)[1]}"
        return kind
    return f"{kind} {rest}"


@dataclass(frozen=True)
class Rate:
    seconds_per_unit: float
    basis: str  # "this host (n steps)", "other hosts (n steps)" or "built-in default"
    fixed_seconds: float = 0.0  # what the step costs whatever the model's size (0 unless sizes set it)


class CostModel:
    """Seconds per step from records (this host first), else defaults. Per kind of step, one fixed cost
    shared by every type of the kind and one rate per type of work (step_key): a K-quant builds slower
    than a Q8_0, but both start the same process. A type without records takes its kind's rate. The
    f16's measure has a fixed cost of its own (it starts one worker, the other measures two)."""

    def __init__(self, records: list[RunRecord], hardware_id: str, probe: HostProbe | None = None, *,
                 memory_factors: dict[str, float] | None = None, protocol: str | None = None) -> None:
        """`protocol`: the planned run's evaluation protocol; the kinds BY_PROTOCOL learn only from records
        of it (None: from every record)."""
        # Peaks this host measured above the formulas (tasks.plan.learned.memory_factors): the plan scales by them.
        self.memory_factors = memory_factors or {}
        # Records of the current meter (steps timed as shares, the importance matrix apart) where there
        # are any: an older record's builds carry the neighbours' time and the imatrix inside a build.
        records = [r for r in records if all(step.share_s is not None for step in r.steps)] or records
        self._rates: dict[str, Rate] = {}
        for key, (fixed, rate) in DEFAULT_COSTS.items():
            factor = probe_factor(BUILT_IN_PROBE, probe, kind_of(key))
            basis = "built-in default" + (f" x{factor:.2f} (this host's probe)" if factor != 1.0 else "")
            self._rates[key] = Rate(factor * rate, basis, factor * fixed)

        def on_this_host(record: RunRecord) -> bool:
            return record.hardware_id == hardware_id

        def as_here(kind: str):  # another host's seconds as this host would take them
            return lambda r: 1.0 if on_this_host(r) else probe_factor(r.probe, probe, kind)

        # In KINDS' order: the reference pass is learned before the measures, whose quality pass its
        # rate prices (_quality_rate).
        def same_protocol(kind: str, record: RunRecord) -> bool:
            return protocol is None or kind not in BY_PROTOCOL or record.protocol == protocol

        for kind in KINDS:
            for where, keep in (("this host", on_this_host), ("other hosts", lambda r: True)):
                by_key = _points_by_key([r for r in records if same_protocol(kind, r)], kind, keep,
                                        quality_rate=self._quality_rate(), scale=as_here(kind))
                if by_key:
                    self._learn(kind, by_key, where)
                    break
        for kind, like in LIKE.items():
            here = _points_by_key(records, kind, on_this_host)
            self._rates[kind] = _shaped_like(self._rates[kind], self._rates[like], like, here or _points_by_key(
                records, kind, lambda r: True, scale=as_here(kind)))

    def _learn(self, kind: str, by_key: dict[str, list[tuple[float, float]]], where: str) -> None:
        """The kind's rates from its records. Records at sizes 2x apart fit a line (fixed cost + rate);
        records at one size cannot tell a fixed cost from a rate, so there the built-in line keeps its
        shape and is scaled to pass through them: a rate through the origin learned on a 135M model,
        where the fixed cost is most of a step, priced the 1.5B's steps 3x too high. A type of the kind
        that this host has not recorded takes its built-in line scaled as the kind's records scale it."""
        alone = [k for k in by_key if kind == "measure" and _is_base(k)]
        for key in alone:  # the f16's measure times speed only: it starts one worker, the others two
            self._learn_alone(key, by_key.pop(key), where)
        if not by_key:
            return
        points = [pt for pts in by_key.values() for pt in pts]
        basis = f"{where} ({len(points)} steps)"
        built_in = self._rates[kind]
        # How much slower this host ran each recorded type than that type's own built-in line: against the
        # kind's line, a Q8_0 build (a quarter of a K-quant's work) read as a fast host and priced the
        # unrecorded Q4_K_M at x0.34 (25 s predicted, 62 s measured on the 1.5B).
        host_factor = _factor_by_key({key: self._rates.get(key, built_in) for key in by_key}, by_key)
        for key in DEFAULT_COSTS:
            if key != kind and kind_of(key) == kind and key not in by_key and key not in alone:
                line = self._rates[key]
                self._rates[key] = Rate(host_factor * line.seconds_per_unit, f"{basis}, built-in type line",
                                        host_factor * line.fixed_seconds)
        if any(map(_spans, by_key.values())):
            fixed, slopes, pooled = fit_kind(by_key)
            self._rates[kind] = Rate(pooled, basis, fixed)
            for key, slope in slopes.items():
                if kind not in BY_BYTES or _spans(by_key[key]):
                    self._rates[key] = Rate(slope, f"{where} ({len(by_key[key])} steps)", fixed)
                else:  # priced on bytes: a type seen at one size takes the kind's line
                    self._rates[key] = self._rates[kind]
            return
        self._rates[kind] = _through(built_in, points, basis)
        for key, key_points in by_key.items():
            line = self._rates[key] if key in DEFAULT_COSTS else built_in
            self._rates[key] = _through(line, key_points, f"{where} ({len(key_points)} steps)")

    def _learn_alone(self, key: str, points: list[tuple[float, float]], where: str) -> None:
        """One type's line with its own fixed cost: fitted where its records span 2x in size, else its
        built-in line scaled through them."""
        basis = f"{where} ({len(points)} steps)"
        if _spans(points):
            fixed, per_unit = fit_fixed_and_rate(points)
            self._rates[key] = Rate(per_unit, basis, fixed)
        else:
            self._rates[key] = _through(self._rates.get(key) or self._rates[kind_of(key)], points, basis)

    def _quality_rate(self) -> float:
        """Seconds per billion weights x chunk of a measure's quality pass: the reference pass's work
        (the same forward pass over the same chunks), priced by its rate (0 before it is learned)."""
        reference = self._rates.get("reference pass")
        return reference.seconds_per_unit if reference else 0.0

    def rate(self, step: str) -> Rate:
        return self._rates.get(step_key(step)) or self._rates.get(kind_of(step), Rate(0.0, "not modelled"))

    def step_seconds(self, step: str, n_weights: int, *, chunks: int = 1) -> float:
        """The predicted time of `step` on a model of `n_weights`: measure and serve from the bytes of
        the model they read (a Q4 serves in half a Q8's time), a measure's quality pass from its chunks."""
        kind = kind_of(step)
        if kind not in ON_MODEL_BYTES:
            return self.seconds(step, step_units(step, n_weights, chunks=chunks))
        if kind == "humaneval":  # chunks: the problems, each a prompt and a greedy completion
            return self.seconds(step, model_gb(step, n_weights) * chunks)
        seconds = self.seconds(step, model_gb(step, n_weights))
        if kind == "measure" and not _is_base(step):
            seconds += self._quality_rate() * n_weights / 1e9 * chunks
        return seconds

    def seconds(self, step: str, units: float) -> float:
        rate = self.rate(step)
        return rate.fixed_seconds + rate.seconds_per_unit * units


def probe_factor(there: dict | HostProbe | None, here: HostProbe | None, kind: str) -> float:
    """How much longer (>1) `kind` takes on the host probed `here` than on the one probed `there`: the
    ratio of their probe figures for the kinds that run a model; 1 where either is unknown."""
    figure = PROBE_FIGURE.get(kind)
    if figure is None or there is None or here is None:
        return 1.0
    there_tps = there[figure] if isinstance(there, dict) else getattr(there, figure)
    return there_tps / getattr(here, figure)


def _points_by_key(records: list[RunRecord], kind: str, keep, *, quality_rate: float = 0.0,
                   scale=lambda record: 1.0) -> dict[str, list[tuple[float, float]]]:
    """step_key -> (units, seconds) of the measured (not reused) steps of `kind`, each record's seconds
    times `scale(record)` (another host's, as this host would take them). Measure and serve are
    fitted on the model's bytes (CostModel.step_seconds), a measure less its quality pass (its chunks
    come from its stored units: records keep units, which encode the chunks)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        if not keep(record):
            continue
        factor = scale(record)
        for step in record.steps:
            if step.reused or step.units <= 0 or kind_of(step.step) != kind:
                continue
            seconds = factor * (step.wall_s if step.share_s is None else step.share_s)
            units = step.units
            if kind in ("measure", "serve"):
                units = model_gb(step.step, record.n_weights)
            if kind == "humaneval":
                units = model_gb(step.step, record.n_weights) * round(step.units / (record.n_weights / 1e9))
            if kind == "measure" and not _is_base(step.step):
                seconds -= quality_rate * record.n_weights / 1e9 * _measured_chunks(step, record.n_weights)
            out.setdefault(step_key(step.step), []).append((units, max(seconds, 0.0)))
    return out


def fit_kind(by_key: dict[str, list[tuple[float, float]]]) -> tuple[float, dict[str, float], float]:
    """(fixed seconds, seconds per unit of each key, of the kind as a whole): seconds = fixed + rate x
    units, the fixed cost shared by the kind's keys. Least squares where some key was seen at sizes at
    least 2x apart (otherwise a fixed cost cannot be told from a rate) and the fit is physical (no
    negative cost); otherwise through the origin, each key's rate a ratio of sums (a long step counts
    for what it weighs, one noisy small step does not swing it)."""
    import numpy as np  # a plan is fitted rarely; records are written (every step) without numpy

    keys = sorted(by_key)
    spans = any(map(_spans, by_key.values()))
    fixed = 0.0
    if spans:
        rows, target = [], []
        for column, key in enumerate(keys):
            for units, seconds in by_key[key]:
                row = [1.0] + [0.0] * len(keys)
                row[1 + column] = units
                rows.append(row)
                target.append(seconds)
        solution = np.linalg.lstsq(np.array(rows), np.array(target), rcond=None)[0]
        if solution[0] >= 0 and all(solution[1:] > 0):
            fixed = float(solution[0])
    slopes = {key: _slope_through(pts, fixed) for key, pts in by_key.items()}
    pooled = _slope_through([pt for pts in by_key.values() for pt in pts], fixed)
    return fixed, slopes, pooled


def _measured_chunks(step, n_weights: int) -> int:
    """The chunks a recorded measure scored, from its stored units (records keep units, not chunks)."""
    return max(round(step.units / (n_weights / 1e9)) - SPEED_CHUNK_EQUIVALENTS, 0)


def model_gb(step: str, n_weights: int) -> float:
    """GB of weights the step's variant reads per token (its quant from the step's name)."""
    key = step_key(step).split(" ")
    fmt, quant = (key[1], key[2]) if len(key) >= 3 else ("gguf", "q8_0")
    bpw = ONNX_BPW.get(quant, 16.0) if fmt == "onnx" else GGUF_BPW.get(quant.split("-")[0].upper(), 8.5)
    return n_weights * bpw / 8 / 1e9


def _is_base(step: str) -> bool:
    return step_key(step).split(" ")[-1] in BASE_QUANTS


def _factor(line: Rate, points: list[tuple[float, float]]) -> float:
    """How much slower (>1) these records ran than `line` predicts: a ratio of sums."""
    return _factor_by_key({"": line}, {"": points})


def _factor_by_key(lines: dict[str, Rate], by_key: dict[str, list[tuple[float, float]]]) -> float:
    """_factor over several keys, each key's points against its own line."""
    predicted = sum(lines[key].fixed_seconds + lines[key].seconds_per_unit * units
                    for key, points in by_key.items() for units, _ in points)
    measured = sum(seconds for points in by_key.values() for _, seconds in points)
    return measured / predicted if predicted > 0 else 1.0


def _through(line: Rate, points: list[tuple[float, float]], basis: str) -> Rate:
    """`line` scaled by k to pass through `points` (k a ratio of sums); through the origin when the
    line has no fixed cost."""
    if not any(line.fixed_seconds + line.seconds_per_unit * units > 0 for units, _ in points):
        return Rate(_slope_through(points, 0.0), basis)
    k = _factor(line, points)
    shaped = ", shaped like the built-in line" if line.fixed_seconds > 0 else ""
    return Rate(k * line.seconds_per_unit, basis + shaped, k * line.fixed_seconds)


def _shaped_like(own: Rate, like: Rate, like_kind: str, points: dict[str, list[tuple[float, float]]]) -> Rate:
    """`own` where its records set a fixed cost (or there are none); otherwise `like`'s line scaled to
    pass through `own`'s records: k x (like's fixed + like's rate x units), k fitted as a ratio of sums."""
    pts = [pt for key_points in points.values() for pt in key_points]
    if own.fixed_seconds > 0 or not pts or like.fixed_seconds <= 0:
        return own
    k = _factor(like, pts)
    return Rate(k * like.seconds_per_unit, f"{own.basis}, shaped like the {like_kind}", k * like.fixed_seconds)


def _spans(points: list[tuple[float, float]]) -> bool:
    """Seen at sizes at least 2x apart: enough to tell a fixed cost from a rate."""
    return len(points) > 1 and max(u for u, _ in points) >= 2 * min(u for u, _ in points)


def _slope_through(points: list[tuple[float, float]], fixed: float) -> float:
    """Seconds per unit with the fixed cost given: a ratio of sums of what is left after it (none left:
    the step costs its fixed cost)."""
    return max(sum(s - fixed for _, s in points), 0.0) / sum(u for u, _ in points)


def fit_fixed_and_rate(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(fixed seconds, seconds per unit) of one kind of work: fit_kind with one key."""
    fixed, slopes, _ = fit_kind({"": points})
    return fixed, slopes[""]


def step_units(step: str, n_weights: int, *, chunks: int = 1) -> float:
    """The work of a step in the cost model's units."""
    billions = n_weights / 1e9
    kind = kind_of(step)
    if kind in ("reference pass", "imatrix", "humaneval"):
        return billions * chunks
    if kind == "measure":
        if _is_base(step):  # the reference: its quality is the reference pass
            return billions * SPEED_CHUNK_EQUIVALENTS
        return billions * (chunks + SPEED_CHUNK_EQUIVALENTS)
    return billions
