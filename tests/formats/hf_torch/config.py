from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class HfTorchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="Weights dtype in PyTorch.")


CONFIG = HfTorchConfig
