"""The plan of a config on this host: the model's shape from its source, this process's memory limit, the
store's free disk and the cost model fitted on this store's recorded runs; the medium tier priced beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

from tasks.acquire.gguf_source import locate_gguf
from tasks.core.errors import SourceError
from tasks.hosts.hardware import hardware_facts
from tasks.plan.costs import BUILT_IN_PROBE, CostModel, probe_factor
from tasks.plan.learned import memory_factors
from tasks.plan.limits import read_memory_limit
from tasks.plan.plan import Plan, plan_run
from tasks.plan.probe import HostProbe, ProbeError, host_probe
from tasks.plan.records import evaluation_protocol, load_run_records
from tasks.plan.shapes import ModelShape, medium_tier_shapes, shape_from_gguf, shape_from_hf


def source_shape(config) -> ModelShape:
    """The model's facts from its source, without dequantizing or downloading weights."""
    source = config.source
    if source.kind == "gguf":
        return shape_from_gguf(locate_gguf(source), name=config.model_name)
    if source.kind == "local":
        return shape_from_hf(source.path.expanduser(), name=config.model_name)
    raise SourceError(
        f"`slmforge plan` reads the model's shape from its files, and a {source.kind} source has none here before "
        "it is downloaded; download it once (huggingface-cli download) and plan it as `source: {kind: local, path: …}`."
    )


def free_disk(path: Path) -> int:
    """Free bytes on the file system that will hold `path` (its nearest existing parent)."""
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def host_cost_model(config, hardware_id: str, *, measure_probe: bool = False, probe_again: bool = False
                    ) -> tuple[CostModel, str]:
    """The cost model of the store's recorded runs on this host, its built-in lines scaled by this host's
    probe (measured now when `measure_probe` and not cached); and one line saying how it was scaled."""
    def busy() -> None:
        raise ProbeError("another slmforge run holds this host's cores, so it was not probed now "
                         "(run `slmforge plan` again when that run is done)")

    try:
        probe = host_probe(hardware_id, measure=measure_probe, again=probe_again, on_wait=busy)
    except ProbeError as exc:
        probe, note = None, f"host probe: not taken: {exc}; built-in lines unscaled"
    else:
        note = describe_probe(probe) if probe else "host probe: none yet (taken by `slmforge plan` or a run)"
    records = load_run_records(config.store_dir)
    return CostModel(records, hardware_id, probe, memory_factors=memory_factors(records, hardware_id),
                     protocol=evaluation_protocol(config.evaluate)), note


def describe_probe(probe: HostProbe) -> str:
    built_in = BUILT_IN_PROBE
    return (f"host probe: prefill {probe.prefill_tps:.0f} tok/s, decode {probe.decode_tps:.0f} tok/s "
            f"({probe.threads} threads); the built-in lines' host {built_in['prefill_tps']:.0f} and "
            f"{built_in['decode_tps']:.0f}: their passes over text x{probe_factor(built_in, probe, 'measure'):.2f}, "
            f"their generating steps x{probe_factor(built_in, probe, 'serve'):.2f} here")


def host_plans(config, *, hardware_id: str | None = None, cost: CostModel | None = None
               ) -> tuple[Plan, list[Plan]]:
    """(this config's plan, the same config on the medium tier's 14B and 30B shapes), all on this host;
    `cost` by default from the store's records and the cached probe (none is measured here)."""
    if hardware_id is None:
        hardware_id = hardware_facts()["hardware_id"]
    shape = source_shape(config)
    limit, disk = read_memory_limit(), free_disk(config.store_dir)
    cost = cost or host_cost_model(config, hardware_id)[0]
    plan = plan_run(config, shape, limit=limit, disk_free_bytes=disk, cost=cost)
    bits = shape.source_bits_per_weight if shape.source_quantized else 16.0
    medium = [plan_run(config, m, limit=limit, disk_free_bytes=disk, cost=cost) for m in medium_tier_shapes(bits)]
    return plan, medium
