"""A transformers-5 model config seen with the transformers-4 names onnxruntime-genai's builder reads.

transformers 5 moved every RoPE setting into `config.rope_parameters`: one dict (`rope_type`,
`rope_theta`, scaling keys, `partial_rotary_factor`), or one dict per attention type for models
that mix them (Gemma 3: `full_attention` with theta 1e6, `sliding_attention` with theta 1e4).
It dropped `rope_theta`, `rope_local_base_freq` and `partial_rotary_factor` as attributes and made
`rope_scaling` an alias of `rope_parameters`. onnxruntime-genai 0.14.1's model builder still reads
the old names: for Gemma 3 it raises AttributeError on `rope_local_base_freq`; worse, it looks for
`rope_theta` at the top of the per-type dict, finds none and silently uses 10000 for the global
layers. The builder's later releases cannot be used with Olive 0.13 (see export.py), so the
config is mapped at the one place the builder gets it: `AutoConfig` in `create_model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Keys of a per-attention-type rope_parameters (transformers' layer_types vocabulary).
GLOBAL_TYPE, LOCAL_TYPE = "full_attention", "sliding_attention"


def legacy_rope_attributes(config: Any) -> dict[str, Any]:
    """The transformers-4 RoPE attributes of `config` ({} when it has no `rope_parameters`):
    `rope_theta`, `rope_scaling` (None for plain RoPE, as transformers 4 wrote it), and where they
    apply `rope_local_base_freq` (sliding-window layers) and `partial_rotary_factor`."""
    params = getattr(config, "rope_parameters", None)
    if not isinstance(params, Mapping) or not params:
        return {}
    per_type = all(isinstance(value, Mapping) for value in params.values())
    main = params.get(GLOBAL_TYPE, {}) if per_type else params
    if "rope_theta" not in main:
        return {}  # nothing to translate from; the builder's own fallbacks stay as they are
    legacy: dict[str, Any] = {"rope_theta": main["rope_theta"], "rope_scaling": _legacy_scaling(main)}
    if per_type and "rope_theta" in params.get(LOCAL_TYPE, {}):
        legacy["rope_local_base_freq"] = params[LOCAL_TYPE]["rope_theta"]
    if "partial_rotary_factor" in main:
        legacy["partial_rotary_factor"] = main["partial_rotary_factor"]
    return legacy


def _legacy_scaling(params: Mapping[str, Any]) -> dict[str, Any] | None:
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type == "default":
        return None
    scaling = {key: value for key, value in params.items() if key not in ("rope_theta", "partial_rotary_factor")}
    return {**scaling, "rope_type": rope_type, "type": rope_type}  # the builder reads either name


class LegacyConfigView:
    """`config` with `overrides` laid over it: reads fall through to the real config, writes (the
    builder sets a few ids on some families) stay in the view. A view rather than setattr: in
    transformers 5 `rope_scaling` is a property whose setter rewrites `rope_parameters`."""

    def __init__(self, config: Any, overrides: dict[str, Any]) -> None:
        object.__setattr__(self, "_config", config)
        object.__setattr__(self, "_overrides", dict(overrides))

    def __getattr__(self, name: str) -> Any:
        overrides = object.__getattribute__(self, "_overrides")
        if name in overrides:
            return overrides[name]
        return getattr(object.__getattribute__(self, "_config"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__getattribute__(self, "_overrides")[name] = value


def legacy_view(config: Any) -> Any:
    """`config` as the builder expects it; the config itself when there is nothing to translate."""
    overrides = legacy_rope_attributes(config)
    return LegacyConfigView(config, overrides) if overrides else config


class _LegacyAutoConfig:
    """Stands for `transformers.AutoConfig` inside the builder module: same loader, mapped result."""

    @staticmethod
    def from_pretrained(*args: Any, **kwargs: Any) -> Any:
        from transformers import AutoConfig  # transformers: only where a model config is read

        return legacy_view(AutoConfig.from_pretrained(*args, **kwargs))


def install() -> None:
    """Make the model builder's `create_model` load configs through `legacy_view` (in the export
    child process only: it changes a module global of onnxruntime_genai)."""
    from onnxruntime_genai.models import builder  # onnxruntime-genai: native runtime, only where it runs

    builder.AutoConfig = _LegacyAutoConfig
