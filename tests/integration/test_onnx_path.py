"""The ONNX path on tiny random models: real Olive export, real ONNX Runtime GenAI measurement
against the real f16 GGUF, real packaging; then in the flow, beside GGUF variants.

The figures of a random 2-layer model say nothing about quality or speed; only their presence,
finiteness and ranges are checked."""

import json
import math
import shutil

import pytest
from mlflow.tracking import MlflowClient

from flows.pipeline import pipeline
from tasks.acquire import AcquireConfig, acquire_model
from tasks.acquire.sources import LocalSource
from tasks.convert import ConvertConfig, convert_to_gguf
from tasks.errors import SlmforgeError
from tasks.evaluate import EvalConfig, prepare_tokens
from tasks.hardware import hardware_facts
from tasks.onnx import runtime
from tasks.onnx.config import OnnxTargets
from tasks.onnx.step import evaluate_onnx, export_onnx_variant, package_onnx_variant
from tasks.tracking import CONTRACT_METRICS
from tests.conftest import QUICK_EVAL, write_config

MEASURED = set(CONTRACT_METRICS) - {"decode_efficiency"}


@pytest.fixture(scope="module")
def onnx_store(tmp_path_factory):
    # Shared by the core test and the flow test: the flow reuses the stored int4 export.
    return tmp_path_factory.mktemp("onnx-store")


@pytest.fixture(scope="module")
def reference(onnx_store, tiny_model_dir):
    """The tiny Llama as the flow sees it, its f16 GGUF and the evaluation tokens."""
    model = acquire_model(LocalSource(kind="local", path=tiny_model_dir), AcquireConfig(), store_root=onnx_store)
    base = convert_to_gguf(model.hf_dir, architecture=model.architecture, identity=model.identity,
                           model_name="Tiny-Llama", config=ConvertConfig(), store_root=onnx_store)
    config = EvalConfig(**QUICK_EVAL)
    tokens = prepare_tokens(base.gguf_path, base_key=base.key, config=config, store_root=onnx_store)
    return model, base, tokens, config


def test_int4_export_is_measured_against_the_gguf_base_and_packaged(reference, onnx_store):
    model, base, tokens, config = reference
    targets = OnnxTargets(precisions=["int4"], smoke_max_new_tokens=8)
    export = export_onnx_variant(model.hf_dir, identity=model.identity, model_name="Tiny-Llama",
                                 precision="int4", targets=targets, store_root=onnx_store)
    assert not export.reused and export.wall_s > 0 and export.versions["onnxruntime-genai"] == "0.14.1"
    assert {"genai_config.json", "model.onnx", "tokenizer.json"} <= {p.name for p in export.folder.iterdir()}

    evaluate = dict(variant_key=export.key, base_gguf=base.gguf_path, base_key=base.key, tokens_file=tokens,
                    config=config, hardware_id=hardware_facts()["hardware_id"], store_root=onnx_store)
    metrics, reused = evaluate_onnx(export.folder, **evaluate)
    assert not reused and MEASURED <= set(metrics), MEASURED - set(metrics)
    assert all(math.isfinite(metrics[name]) for name in MEASURED)
    assert metrics["kld_mean"] >= 0 and metrics["kld_p99"] >= 0 and 0 <= metrics["top1_agreement"] <= 1
    assert metrics["chunks"] == 2 and metrics["scored_tokens"] == 2 * 63  # same protocol as GGUF
    assert metrics["threads"] == 2 and metrics["prefill_tps_sd"] >= 0 and metrics["peak_rss_bytes"] > 0

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
    loaded = runtime.load_onnx_model(moved, threads=1)
    assert len(runtime.greedy_generate(loaded, [1, 9690, 198], 4)) == 4

    again = export_onnx_variant(model.hf_dir, identity=model.identity, model_name="Tiny-Llama",
                                precision="int4", targets=targets, store_root=onnx_store)
    assert again.reused and again.key == export.key and again.wall_s == export.wall_s
    assert evaluate_onnx(again.folder, **evaluate) == (metrics, True)


def _variant_runs(tracking_uri, experiment):
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return {(r.data.params["format"], r.data.params["quant"]): r for r in runs if "mlflow.parentRunId" in r.data.tags}


def test_flow_tracks_onnx_variants_beside_the_gguf_reference(prefect_harness, reference, onnx_store, tiny_model_dir,
                                                              tmp_path, tracking_uri):
    config = write_config(tmp_path / "onnx-only.yaml", {
        "name": "tiny-onnx", "model_name": "Tiny-Llama", "formats": ["onnx"], "onnx": {"precisions": ["int4"]},
        "source": {"kind": "local", "path": str(tiny_model_dir)}, "quantize": {"types": ["Q8_0"]},
        "evaluate": QUICK_EVAL, "tracking": {"tracking_uri": tracking_uri}, "store_dir": str(onnx_store),
    })
    summary = pipeline(str(config))
    assert [(row["format"], row["quant"]) for row in summary["rows"]] == [("gguf", "F16"), ("onnx", "int4")]
    assert summary["reused"]["tiny-llama-onnx-int4"]  # measured by the test above, same store
    assert list(summary["packages"]) == ["tiny-llama-onnx-int4"]  # no GGUF packages without "gguf"
    runs = _variant_runs(tracking_uri, "tiny-onnx")
    onnx = runs[("onnx", "int4")]
    assert MEASURED <= set(onnx.data.metrics) and onnx.data.metrics["export_s"] > 0
    assert onnx.data.tags["slmforge.gate"] == "pass" and onnx.info.status == "FINISHED"
    assert "version.onnxruntime-genai" in onnx.data.params
    assert "README.md" in {a.path for a in MlflowClient(tracking_uri).list_artifacts(onnx.info.run_id)}


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


def test_unsupported_architecture_fails_only_its_onnx_variant(prefect_harness, tiny_gpt2_dir, tmp_path, tracking_uri):
    config = write_config(tmp_path / "gpt2.yaml", {
        "name": "tiny-gpt2", "model_name": "Tiny-GPT2", "onnx": {"precisions": ["int4"]},
        "source": {"kind": "local", "path": str(tiny_gpt2_dir)}, "quantize": {"types": ["Q8_0"]},
        "evaluate": QUICK_EVAL, "tracking": {"tracking_uri": tracking_uri}, "store_dir": str(tmp_path / "store"),
    })
    with pytest.raises(SlmforgeError, match="tiny-gpt2-onnx-int4") as info:
        pipeline(str(config))
    assert "'GPT2LMHeadModel' is not supported by onnxruntime-genai's model builder" in str(info.value)

    runs = _variant_runs(tracking_uri, "tiny-gpt2")
    assert set(runs) == {("gguf", "F16"), ("gguf", "Q8_0"), ("onnx", "int4")}
    for key in [("gguf", "F16"), ("gguf", "Q8_0")]:
        assert runs[key].info.status == "FINISHED" and "perplexity" in runs[key].data.metrics
    failed = runs[("onnx", "int4")]
    assert failed.info.status == "FAILED" and "GPT2LMHeadModel" in failed.data.tags["slmforge.error"]
