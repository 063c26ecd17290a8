"""HF folder -> ONNX Runtime GenAI folder with Microsoft Olive, run in a subprocess.

Olive's `ModelBuilder` pass wraps `onnxruntime_genai.models.builder`. int8 is ModelBuilder fp32
+ Olive's weight-only RTN pass (bits=8): genai 0.14.1's builder has no int8 precision.
Why genai 0.14.1 (tried offline with torch 2.13 + transformers 5.23): olive-ai 0.13.0 patches
`onnxruntime_genai.models.quantized_model`, gone in genai >= 0.16; genai 0.15.x has it but its
`create_model` requires `parse_extra_options()` first, which Olive 0.13.0 never calls.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

from packaging.version import Version
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from tasks.core.errors import SlmforgeError, UnsupportedModelError
from tasks.formats.onnx.embeddings import (
    EMBEDDINGS_HELP, EmbeddingsMode, embedding_options, resolve_embeddings, ties_embeddings,
)
from tasks.hosts import hostlock

# Block sizes Olive's ModelBuilder pass (and MatMulNBits on CPU) accept.
BUILDER_BLOCK_SIZES = (16, 32, 64, 128, 256)
# MatMulNBits accuracy_level: 1=fp32, 2=fp16, 3=bf16, 4=int8 compute for the activations.
ACCURACY_LEVELS = range(1, 5)
RECOMMENDED_PINS = (
    "olive-ai==0.13.0 onnxruntime-genai==0.14.1 onnxruntime==1.32.0 onnx==1.23.2 "
    "onnxscript==0.7.2 onnx-ir==1.1.0 requests"
)
# The model builder's own message for an architecture it has no class for.
_UNSUPPORTED_RE = re.compile(r"NotImplementedError: (The .* model is not currently supported\.)")
_RESULT_TAG = "SLMFORGE_ONNX_RESULT "


def _check_block_size(value: int) -> int:
    if value not in BUILDER_BLOCK_SIZES:
        raise ValueError(f"int4_block_size {value} is not one of {BUILDER_BLOCK_SIZES}")
    return value


def _check_accuracy_level(value: int) -> int:
    if value not in ACCURACY_LEVELS:
        raise ValueError(f"int4_accuracy_level {value} must be 1..4 (1=fp32 2=fp16 3=bf16 4=int8)")
    return value


# Shared by the export config and the pipeline's `onnx:` section, so both reject the same values.
BlockSize = Annotated[int, AfterValidator(_check_block_size)]
AccuracyLevel = Annotated[int, AfterValidator(_check_accuracy_level)]


class OnnxExportError(SlmforgeError):
    """The ONNX export subprocess failed for a reason other than the architecture."""


class OnnxUnsupportedArchitectureError(UnsupportedModelError):
    """onnxruntime-genai's model builder has no exporter for this architecture."""


class OnnxExportConfig(BaseModel):
    """How to export: precision, target EP and the weight-only quantization knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    precision: Literal["int4", "int8", "fp32", "fp16"] = Field(
        "int4", description="int4/int8: weight-only RTN (MatMulNBits), fp32 model IO on CPU; "
        "fp32; fp16 (CUDA only: Olive skips fp16 builds for the CPU EP).",
    )
    execution_provider: Literal["cpu", "cuda"] = Field(
        "cpu", description="ONNX Runtime EP the graph is built for (changes fused ops and IO dtypes)."
    )
    int4_block_size: BlockSize = Field(
        32, description=f"Quantization block size, one of {BUILDER_BLOCK_SIZES}; also used for int8."
    )
    int4_accuracy_level: AccuracyLevel = Field(
        4, description="MatMulNBits compute type, 1=fp32 2=fp16 3=bf16 4=int8 (fastest on CPU); "
        "also used for int8.",
    )

    # The core defaults to the builder's own behaviour; the pipeline's `onnx:` section defaults to "int4".
    embeddings: EmbeddingsMode = Field("float", description=EMBEDDINGS_HELP)

    @model_validator(mode="after")
    def _fp16_needs_cuda(self) -> OnnxExportConfig:
        # Olive silently skips the pass (-> "No output model") for fp16 on CPU; fail early instead.
        if self.precision == "fp16" and self.execution_provider != "cuda":
            raise ValueError("precision 'fp16' needs execution_provider 'cuda'; use fp32 or int4/int8 on CPU")
        if self.embeddings != "float" and self.precision != "int4":
            raise ValueError(f"embeddings {self.embeddings!r} applies to precision 'int4' only, not "
                             f"{self.precision!r}; use embeddings 'float'")
        return self


class OnnxExportResult(BaseModel):
    """Where the folder is, what made it (versions) and how long it took."""

    out_dir: Path
    model_path: Path
    genai_config_path: Path
    size_bytes: int
    files: list[str]
    versions: dict[str, str]
    wall_s: float
    embeddings: str = Field("float", description="The embedding mode used (int4 only; else 'float').")
    tool: str = "olive ModelBuilder"


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_onnx_versions(installed: dict[str, str | None] | None = None) -> list[str]:
    """Human-readable problems with the installed Olive / GenAI / ORT combination ([] = fine).

    `installed` maps distribution name -> version (None = missing); default: this interpreter.
    """
    names = ("olive-ai", "onnxruntime-genai", "onnxruntime", "requests")
    v = installed if installed is not None else {n: _installed(n) for n in names}
    problems = []
    if missing := [n for n in names[:3] if not v.get(n)]:
        problems.append(f"not installed: {', '.join(missing)}; install: {RECOMMENDED_PINS}")
    olive, genai, ort = v.get("olive-ai"), v.get("onnxruntime-genai"), v.get("onnxruntime")
    if olive and genai and Version(olive) < Version("0.14"):
        if Version(genai) >= Version("0.16"):
            problems.append(
                f"olive-ai {olive} imports onnxruntime_genai.models.quantized_model, which "
                f"onnxruntime-genai {genai} no longer has; install onnxruntime-genai==0.14.1"
            )
        elif Version(genai) >= Version("0.15"):
            problems.append(
                f"olive-ai {olive} calls create_model() without parse_extra_options(), which "
                f"onnxruntime-genai {genai} requires ('Hugging Face details not found'); "
                "install onnxruntime-genai==0.14.1"
            )
    if olive and Version(olive) >= Version("0.13") and not v.get("requests"):
        # olive.telemetry imports requests at CLI/workflow start but olive-ai does not declare it.
        problems.append(f"olive-ai {olive} needs 'requests' (undeclared dependency); pip install requests")
    if genai and ort and Version(genai) >= Version("0.14") and Version(ort) < Version("1.26"):
        problems.append(f"onnxruntime-genai {genai} needs onnxruntime>=1.26.0, found {ort}")
    return problems


def olive_workflow_config(
    hf_dir: Path, output_dir: Path, cache_dir: Path, config: OnnxExportConfig, *, tied: bool = False,
) -> dict[str, Any]:
    """The Olive workflow dict (what `olive.workflows.run` takes) for this export; `tied`: the model
    ties its embedding and output matrices (embeddings 'shared' needs it)."""
    bs, acc = config.int4_block_size, config.int4_accuracy_level
    builder: dict[str, Any] = {"type": "ModelBuilder", "precision": config.precision}
    passes: dict[str, dict[str, Any]] = {"builder": builder}
    if config.precision == "int4":
        builder.update(int4_block_size=bs, int4_accuracy_level=acc)
        # Olive's pass has no parameter for shared_embeddings: its extra_options go to the builder as is.
        if extra := embedding_options(resolve_embeddings(config.embeddings, tied=tied)):
            builder["extra_options"] = extra
    elif config.precision == "int8":
        builder["precision"] = "fp32"
        passes["rtn8"] = {"type": "OnnxBlockWiseRtnQuantization", "bits": 8, "is_symmetric": True,
                          "block_size": bs, "accuracy_level": acc}
        # The RTN pass renames the lm_head output to "logits_Q8"; genai_config expects "logits".
        passes["rename"] = {"type": "GraphSurgeries", "surgeries": [
            {"surgeon": "RenameOutputs", "old_names": ["logits_Q8"], "new_names": ["logits"]}]}
    gpu = config.execution_provider == "cuda"
    accelerator = {"device": "gpu" if gpu else "cpu",
                   "execution_providers": ["CUDAExecutionProvider" if gpu else "CPUExecutionProvider"]}
    return {
        "input_model": {"type": "HfModel", "model_path": str(hf_dir)},
        "systems": {"local_system": {"type": "LocalSystem", "accelerators": [accelerator]}},
        "passes": passes, "host": "local_system", "target": "local_system",
        "output_dir": str(output_dir), "cache_dir": str(cache_dir),
        "no_artifacts": True, "log_severity_level": 1,
    }


# Runs in the child interpreter: Olive logs a failed pass and returns normally, so success is
# judged by has_output_model(), not by an exception.
_CHILD = f"""
import json, sys
from importlib import metadata
from olive.workflows import run
from tasks.formats.onnx.embeddings import install_olive_embedding_fix
from tasks.formats.onnx.legacy_config import install
install()  # the builder reads transformers-4 config names (legacy_config.py)
install_olive_embedding_fix()  # Olive's own make_embedding cannot share (embeddings.py)
out = run(json.load(open(sys.argv[1])))
ok = bool(out is not None and out.has_output_model())
vers = {{n: metadata.version(n) for n in ("olive-ai", "onnxruntime", "onnxruntime-genai")}}
print({_RESULT_TAG!r} + json.dumps({{"ok": ok, "versions": vers}}), flush=True)
sys.exit(0 if ok else 3)
"""


def _child_env(staging: Path) -> dict[str, str]:
    # OLIVE_DISABLE_TELEMETRY: Olive 0.13 sends telemetry unless it is "1" (or a CI var is set).
    # HF_HUB_CACHE: the builder uses it as scratch for intermediate files; keep that in staging.
    # PYTHONPATH: the child runs in staging, yet imports this checkout's legacy_config.
    root = str(Path(__file__).resolve().parents[3])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return hostlock.child_env({"PYTHONPATH": path, "OLIVE_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1",
                               "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                               "HF_HUB_CACHE": str(staging / "hf_cache")})


def _raise_failure(hf_dir: Path, log_text: str, rc: int) -> NoReturn:
    if match := _UNSUPPORTED_RE.search(log_text):
        arch = (json.loads((hf_dir / "config.json").read_text()).get("architectures") or ["?"])[0]
        raise OnnxUnsupportedArchitectureError(
            f"ONNX export failed: architecture {arch!r} is not supported by onnxruntime-genai's model "
            f"builder (it said: {match.group(1)!r}). Use a supported family (Llama, Mistral, Qwen2/3, "
            "Phi-3/4, Gemma, SmolLM3, …) or skip the ONNX target for this model."
        )
    tail = "\n".join(log_text.strip().splitlines()[-40:])
    raise OnnxExportError(
        f"ONNX export (Olive) exited with code {rc} and produced no model. Last log lines:\n{tail}\n"
        f"Check the versions (`check_onnx_versions()`; known good: {RECOMMENDED_PINS})."
    )


def check_external_data(model_dir: Path) -> None:
    """Every initializer the graph keeps in an external file lies inside that file. A disk that filled
    up under the builder left model.onnx.data short while the export still reported success, and the
    folder failed only when a measurement loaded it ("offset ... out of bounds")."""
    import onnx  # the ONNX toolchain: only where a graph is read

    for graph_file in sorted(model_dir.glob("*.onnx")):
        graph = onnx.load(str(graph_file), load_external_data=False)
        for tensor in graph.graph.initializer:
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                continue
            info = {entry.key: entry.value for entry in tensor.external_data}
            data = model_dir / info["location"]
            end = int(info.get("offset", 0)) + int(info.get("length", 0))
            size = data.stat().st_size if data.is_file() else 0
            if end > size:
                raise OnnxExportError(
                    f"The ONNX export of {model_dir.name} is incomplete: tensor {tensor.name} ends at byte {end:,} "
                    f"of {info['location']}, which has {size:,} bytes (was the disk full? "
                    f"{shutil.disk_usage(model_dir).free / 2**30:.1f} GiB free now). Free space and run again.")


def export_onnx(
    hf_dir: Path, out_dir: Path, config: OnnxExportConfig, *,
    python: str | None = None, timeout_s: float | None = None,
) -> OnnxExportResult:
    """Export `hf_dir` to an ONNX Runtime GenAI folder at `out_dir` (replaced if it exists).

    The conversion runs in a child interpreter (`python`, default this one) so that its peak
    memory (~2.3 GB for a 135M model) is returned to the OS, and writes into a hidden sibling
    directory that is renamed to `out_dir` only on success: a crash never leaves a half folder.
    """
    hf_dir, out_dir = Path(hf_dir).resolve(), Path(out_dir).resolve()
    if not (hf_dir / "config.json").is_file():
        raise OnnxExportError(f"{hf_dir} has no config.json; pass a Hugging Face model folder")
    if python is None and (problems := check_onnx_versions()):
        raise OnnxExportError("ONNX toolchain problems:\n" + "\n".join(f"  - {p}" for p in problems))
    tied = config.precision == "int4" and config.embeddings == "shared" and ties_embeddings(hf_dir)
    embeddings = resolve_embeddings(config.embeddings, tied=tied) if config.precision == "int4" else "float"
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        model_dir, cfg_path, log_path = staging / "model", staging / "olive.json", staging / "export.log"
        cfg_path.write_text(json.dumps(olive_workflow_config(hf_dir, model_dir, staging / "cache", config, tied=tied)))
        start = time.perf_counter()
        with log_path.open("w") as log:
            try:
                proc = subprocess.run(
                    [python or sys.executable, "-c", _CHILD, str(cfg_path)],
                    stdout=log, stderr=subprocess.STDOUT, env=_child_env(staging),
                    cwd=staging, timeout=timeout_s, check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise OnnxExportError(f"ONNX export timed out after {timeout_s}s") from exc
        wall_s = time.perf_counter() - start
        log_text = log_path.read_text(errors="replace")
        results = [ln[len(_RESULT_TAG):] for ln in log_text.splitlines() if ln.startswith(_RESULT_TAG)]
        result: dict[str, Any] = json.loads(results[-1]) if results else {"ok": False}
        if proc.returncode != 0 or not result["ok"] or not (model_dir / "genai_config.json").is_file():
            _raise_failure(hf_dir, log_text, proc.returncode)
        check_external_data(model_dir)
        # Olive's own handler description, holding the absolute staging path: stale after rename.
        (model_dir / "model_config.json").unlink(missing_ok=True)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(model_dir, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files = sorted(p.name for p in out_dir.iterdir() if p.is_file())
    return OnnxExportResult(
        out_dir=out_dir, model_path=out_dir / "model.onnx",
        genai_config_path=out_dir / "genai_config.json",
        size_bytes=sum((out_dir / f).stat().st_size for f in files),
        files=files, versions=result["versions"], wall_s=round(wall_s, 3), embeddings=embeddings,
    )

