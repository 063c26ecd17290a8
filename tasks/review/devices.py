"""Device profiles: what a target machine offers a model (configs/devices/<name>.yaml).

A profile is what `slmforge recommend --device NAME` fits variants into: a memory budget, the
context the application needs, the KV-cache type and SWA setting its llama.cpp runtime uses,
and optionally the memory bandwidth that predicts decode speed where the device was never measured.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ByteSize, ConfigDict, Field, ValidationError

from tasks.core.config_errors import describe, read_yaml_mapping
from tasks.core.errors import ConfigError, UserError
from tasks.core.resources import config_dir

# llama.cpp's accepted --cache-type-k/-v values (common/arg.cpp kv_cache_types); a quantized V
# cache needs flash attention, which llama.cpp turns on by itself where the backend has it.
CacheType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]


class DeviceProfile(BaseModel):
    """One target device, as the runtime on it will be configured."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(description="Profile name (the file's stem); also the registry alias for this device.")
    description: str = Field("", description="What machine this stands for, in a sentence.")
    memory_budget: ByteSize = Field(
        description="Memory the model process may use at its peak, e.g. '3GiB': weights + KV cache + "
        "runtime overhead must fit under it with the margin.",
    )
    context_length: int = Field(ge=16, description="Tokens of context the application keeps (the KV cache size).")
    kv_cache_type: CacheType = Field("f16", description="llama.cpp KV-cache type for K and V (-ctk/-ctv).")
    swa_full: bool = Field(
        False, description="Full-size cache for sliding-window layers. llama-server/llama-cli default "
        "to false (window + batch cells); llama-cpp-python and the C API default to true.",
    )
    threads: int = Field(ge=1, description="CPU threads the runtime uses on the device.")
    memory_bandwidth: ByteSize | None = Field(
        None, description="Sustained memory read bandwidth in bytes/s, e.g. '17GB' (17e9 B/s): predicts "
        "decode speed where no run was measured on this device. None: no prediction.",
    )
    hardware_id: str | None = Field(
        None, description="slmforge.hardware_id of runs measured on this very device: their speeds are "
        "used as measured instead of predicted.",
    )
    margin: float = Field(
        0.10, ge=0, lt=1, description="Share of the budget kept free (other processes, allocator "
        "slack, overhead that varies between runs): a variant fits when need <= budget x (1 - margin).",
    )

    @property
    def usable_bytes(self) -> int:
        return int(self.memory_budget * (1 - self.margin))


def devices_dir() -> Path:
    return config_dir() / "devices"


def shipped_devices() -> list[str]:
    return sorted(p.stem for p in devices_dir().glob("*.yaml"))


def load_device(name_or_path: str) -> DeviceProfile:
    """A profile by name (configs/devices/NAME.yaml) or by a YAML path; every problem at once."""
    path = Path(name_or_path)
    if not (name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path):
        path = devices_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            known = shipped_devices()
            close = difflib.get_close_matches(name_or_path, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(f"no device profile {name_or_path!r}; {hint}shipped profiles: {', '.join(known)} "
                            f"(or give a YAML path)")
    if not path.is_file():
        raise UserError(f"device profile file not found: {path}; check the path")
    data = read_yaml_mapping(path)
    data.setdefault("name", path.stem)
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), [describe(e, DeviceProfile) for e in exc.errors()]) from None
