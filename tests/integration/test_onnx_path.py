"""The ONNX path on tiny random models: real Olive export, real ONNX Runtime GenAI measurement
against the stored f16 GGUF reference, real packaging; then in the flow, beside the GGUF reference.

The figures of a random 2-layer model say nothing about quality or speed; only their presence,
finiteness and ranges are checked."""

import json
import math
import shutil

import pytest
from mlflow.tracking import MlflowClient
from transformers import AutoTokenizer

from flows.pipeline import pipeline
from tasks.acquire import AcquireConfig, acquire_model
from tasks.acquire.sources import LocalSource
from tasks.core.errors import UnsupportedModelError
from tasks.evaluate import EvalConfig
from tasks.evaluate.humaneval.generate import prompt_ids, prompt_text
from tasks.evaluate.humaneval.problems import ProblemSubset, load_problems
from tasks.evaluate.humaneval.sandbox import isolation_problem
from tasks.evaluate.humaneval.step import HumanEvalConfig
from tasks.evaluate.measure import compute_reference, measure_variant, prepare_tokens
from tasks.formats import get_format
from tasks.formats.base import Built, BuildInputs
from tasks.formats.gguf import runtime as gguf_runtime
from tasks.formats.gguf.convert import ConvertConfig
from tasks.formats.onnx import runtime
from tasks.formats.onnx.build import export_onnx_variant
from tasks.formats.onnx.config import OnnxTargets
from tasks.formats.onnx.package import package_onnx_variant
from tasks.hosts.hardware import hardware_facts
from tasks.plan import guard
from tasks.plan import needs as N
from tasks.plan.shapes import shape_from_gguf
from tasks.tracking.client import CONTRACT_METRICS
from tests.helpers import QUICK_EVAL, tools_required, write_config

MEASURED = set(CONTRACT_METRICS) - {"decode_efficiency"}  # derived at the flow's edge


@pytest.fixture(scope="module")
def onnx_store(tmp_path_factory):
    # Shared by the core test and the flow test: the flow reuses the stored int4 export and figures.
    return tmp_path_factory.mktemp("onnx-store")


@pytest.fixture(scope="module")
def reference(onnx_store, tiny_model_dir):
    """The tiny Llama as the flow sees it, its f16 GGUF base, the evaluation tokens and the stored reference."""
    model = acquire_model(LocalSource(kind="local", path=tiny_model_dir), AcquireConfig(), store_root=onnx_store)
    base = get_format("gguf").build_base(model, model_name="Tiny-Llama", config=ConvertConfig(), store_root=onnx_store)
    config = EvalConfig(**QUICK_EVAL)
    tokens = prepare_tokens(base, config, store_root=onnx_store)
    ref = compute_reference(base, tokens, config, store_root=onnx_store)
    return model, base, tokens, ref, config


def test_int4_export_is_measured_against_the_gguf_reference_and_packaged(reference, onnx_store, monkeypatch):
    model, base, tokens, ref, config = reference
    targets = OnnxTargets(precisions=["int4"], smoke_max_new_tokens=8)
    export = export_onnx_variant(model.hf_dir, identity=model.identity, model_name="Tiny-Llama",
                                 precision="int4", targets=targets, store_root=onnx_store)
    assert not export.reused and export.wall_s > 0 and export.versions["onnxruntime-genai"] == "0.14.1"
    assert {"genai_config.json", "model.onnx", "tokenizer.json"} <= {p.name for p in export.folder.iterdir()}

    built = Built(format="onnx", quant="int4", path=export.folder, key=export.key, reused=export.reused,
                  build_s=export.wall_s, versions=export.versions)
    evaluate = dict(base=base, reference=ref, tokens_file=tokens, config=config,
                    hardware_id=hardware_facts()["hardware_id"], store_root=onnx_store)
    asked = []  # what the measure's memory guard admits (tasks.plan.guard.require)
    monkeypatch.setattr(guard, "admit", lambda needs, **_: asked.append(needs[0]) or needs[0])
    metrics, reused = measure_variant(built, **evaluate)
    assert not reused and MEASURED <= set(metrics), MEASURED - set(metrics)
    # The need the plan prices for this row (`measure onnx int4`, ONNX Runtime's process), not llama.cpp's
    # (until 2026-12-05 the run asked for `measure measure onnx int4` by llama.cpp's formula).
    assert asked == [N.measure_need(
        shape_from_gguf(base.path), variant="onnx int4", model_bytes=guard.path_bytes(export.folder),
        n_ctx=config.n_ctx, speed_ctx=config.prefill_tokens + config.decode_tokens + max(config.depths, default=0),
        anchor_bytes=base.path.stat().st_size if config.speed_anchor else 0)]
    monkeypatch.undo()
    assert all(math.isfinite(metrics[name]) for name in MEASURED)
    assert metrics["kld_mean"] >= 0 and metrics["kld_p99"] >= 0 and 0 <= metrics["top1_agreement"] <= 1
    assert metrics["chunks"] == 2 and metrics["scored_tokens"] == 2 * 63  # same protocol as GGUF
    assert metrics["threads"] == 2 and metrics["prefill_tps_sd"] >= 0 and metrics["peak_rss_bytes"] > 0
    assert 0 <= metrics["task_score"] <= 1 and metrics["prompts"]  # the suite ran in the speed worker
    assert metrics["size_bytes"] > 0 and metrics["bits_per_weight"] > 0 and metrics["weight_bytes"] > 0

    packaged = package_onnx_variant(
        export.folder, hf_dir=model.hf_dir, model_name="Tiny-Llama", precision="int4", variant_key=export.key,
        metrics=metrics, provenance={"source": model.source}, targets=targets, store_root=onnx_store, threads=2,
    )
    files = {p.name for p in packaged.folder.iterdir()}
    assert {"model.onnx", "genai_config.json", "tokenizer.json", "chat_template.jinja", "README.md",
            "slmforge-manifest.json", "smoke_test.json"} <= files
    smoke = json.loads((packaged.folder / "smoke_test.json").read_text())
    assert smoke["answer_tokens"] > 0 and packaged.smoke_answer == smoke["answer"] != ""
    card = (packaged.folder / "README.md").read_text()
    assert "What is the capital of France?" in card and "`kld_mean`" in card and "onnxruntime_genai" in card

    # The packaged folder serves on its own, away from the store it was built in.
    moved = shutil.copytree(packaged.folder, onnx_store.parent / "shipped")
    loaded = runtime.load(moved, n_ctx=64, threads=1)
    answer = loaded.greedy([1, 9690, 198], 4)
    assert 1 <= len(answer) <= 4 and (len(answer) == 4 or loaded.is_end(answer[-1]))

    again = export_onnx_variant(model.hf_dir, identity=model.identity, model_name="Tiny-Llama",
                                precision="int4", targets=targets, store_root=onnx_store)
    assert again.reused and again.key == export.key and again.wall_s == export.wall_s
    # The format's own build wraps the same core: the same stored record.
    inputs = BuildInputs(hf_dir=model.hf_dir, hf_identity=model.identity, architecture=model.architecture,
                         model_name="Tiny-Llama", base=base, store_root=onnx_store)
    assert get_format("onnx").build("int4", inputs, targets) == built.model_copy(update={"reused": True})
    assert measure_variant(built.model_copy(update={"reused": True}), **evaluate) == (metrics, True)


@pytest.mark.skipif(isolation_problem() is not None and not tools_required(),
                    reason=f"no sandbox here: {isolation_problem()}")
def test_humaneval_runs_on_onnx_from_the_same_prompt_text_as_the_gguf(reference, onnx_store):
    model, base, tokens, ref, config = reference
    export = export_onnx_variant(model.hf_dir, identity=model.identity, model_name="Tiny-Llama", precision="int4",
                                 targets=OnnxTargets(precisions=["int4"], smoke_max_new_tokens=8),
                                 store_root=onnx_store)  # the first test's, from the store
    problems = load_problems(ProblemSubset(task_ids=["HumanEval/2", "HumanEval/0"]))
    onnx_model = runtime.load(export.folder, n_ctx=1024, threads=1)
    gguf_model = gguf_runtime.load(base.path, n_ctx=1024, threads=1)
    assert onnx_model.chat_template() and onnx_model.special_texts() == gguf_model.special_texts()
    hf_tokenizer = AutoTokenizer.from_pretrained(export.folder)
    for problem in problems:  # one prompt text for both formats; each tokenizes it as it is deployed
        text, has_bos, chat = prompt_text(onnx_model, problem)
        assert chat and has_bos and prompt_text(gguf_model, problem) == (text, True, True), problem.task_id
        # GenAI's ids are the Hugging Face tokenizer's (llama.cpp's may split whitespace otherwise)
        assert prompt_ids(onnx_model, problem) == (hf_tokenizer.encode(text, add_special_tokens=False), True)

    built = Built(format="onnx", quant="int4", path=export.folder, key=export.key, reused=True,
                  build_s=export.wall_s, versions=export.versions)
    with_humaneval = config.model_copy(update={"humaneval": HumanEvalConfig(
        problems=ProblemSubset(task_ids=["HumanEval/2", "HumanEval/0"]), max_tokens=16)})
    metrics, reused = measure_variant(built, base=base, reference=ref, tokens_file=tokens, config=with_humaneval,
                                      hardware_id=hardware_facts()["hardware_id"], store_root=onnx_store)
    assert not reused and metrics["humaneval_problems"] == 2 and "humaneval_skipped" not in metrics
    assert metrics["humaneval_pass_at_1_low"] <= metrics["humaneval_pass_at_1"] <= metrics["humaneval_pass_at_1_high"]


def _variant_runs(tracking_uri, experiment):
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return {(r.data.params["format"], r.data.params["quant"]): r for r in runs if "mlflow.parentRunId" in r.data.tags}


def test_flow_tracks_onnx_variants_beside_the_gguf_reference(prefect_harness, reference, onnx_store, tiny_model_dir,
                                                              tmp_path, tracking_uri):
    config = write_config(tmp_path / "onnx-only.yaml", {
        "name": "tiny-onnx", "model_name": "Tiny-Llama", "formats": {"onnx": {"precisions": ["int4"]}},
        "source": {"kind": "local", "path": str(tiny_model_dir)},
        "evaluate": QUICK_EVAL, "tracking": {"tracking_uri": tracking_uri, "artifacts": "copy"},
        "store_dir": str(onnx_store),
    })
    summary = pipeline(str(config))
    assert [(row["format"], row["quant"]) for row in summary["rows"]] == [("gguf", "F16"), ("onnx", "int4")]
    assert summary["reused"]["tiny-llama-onnx-int4"]  # measured by the test above, same store
    assert "tiny-llama-onnx-int4" in summary["packages"]
    runs = _variant_runs(tracking_uri, "tiny-onnx")
    onnx = runs[("onnx", "int4")]
    assert MEASURED <= set(onnx.data.metrics) and onnx.data.metrics["build_s"] > 0
    assert onnx.data.tags["slmforge.gate"] == "pass" and onnx.info.status == "FINISHED"
    assert "version.onnxruntime-genai" in onnx.data.params
    client = MlflowClient(tracking_uri)
    assert "README.md" in {a.path for a in client.list_artifacts(onnx.info.run_id)}
    # artifacts: copy puts the built ONNX folder itself into MLflow, beside the package files.
    copied = [a.path for a in client.list_artifacts(onnx.info.run_id) if a.is_dir]
    assert any(f"{folder}/genai_config.json" in {a.path for a in client.list_artifacts(onnx.info.run_id, folder)}
               for folder in copied), copied


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory, embedded_tokenizer_dir):
    """A tiny random GPT-2: llama.cpp converts it, onnxruntime-genai's model builder does not."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-gpt2")
    # n_ctx: the converter reads this older GPT-2 key for the context length.
    config = GPT2Config(vocab_size=49152, n_embd=64, n_layer=2, n_head=4, n_positions=1024, n_ctx=1024,
                        bos_token_id=1, eos_token_id=2)
    GPT2LMHeadModel(config).to(torch.float16).save_pretrained(out)
    for item in embedded_tokenizer_dir.iterdir():
        shutil.copy(item, out / item.name)
    return out


def test_a_model_the_onnx_builder_cannot_take_is_refused_before_any_conversion(
        prefect_harness, tiny_gpt2_dir, tmp_path, tracking_uri):
    store = tmp_path / "store"
    config = write_config(tmp_path / "gpt2.yaml", {
        "name": "tiny-gpt2", "model_name": "Tiny-GPT2",
        "formats": {"gguf": {"types": ["Q8_0"]}, "onnx": {"precisions": ["int4"]}},
        "source": {"kind": "local", "path": str(tiny_gpt2_dir)},
        "evaluate": QUICK_EVAL, "tracking": {"tracking_uri": tracking_uri}, "store_dir": str(store),
    })
    with pytest.raises(UnsupportedModelError) as info:
        pipeline(str(config))
    message = str(info.value)
    assert "'GPT2LMHeadModel'" in message and "onnx: onnxruntime-genai's model builder has no exporter" in message
    assert "remove 'onnx' from `formats`" in message and "gguf:" not in message  # llama.cpp takes GPT-2
    assert not (store / "convert").exists() and not (store / "onnx-export").exists()  # nothing was built

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny-gpt2").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]  # the parent only: no variant was started
    assert "GPT2LMHeadModel" in runs[0].data.tags["slmforge.error"]
