"""Per-chunk figures from the real workers (reference and quality passes on a tiny random-weight
GGUF): each chunk's means add up to the run's figures exactly (every chunk scores the same number
of tokens), so the paired intervals read the same numbers the figures are made of; and they go to
MLflow as metric histories and come back in chunk order."""

import json
import math

import pytest
from mlflow.tracking import MlflowClient

from tasks.evaluate.process import run_worker
from tasks.formats import get_format
from tasks.core.intervals import CHUNK_SERIES
from tasks.review.search import read_runs, with_chunk_series
from tasks.tracking import client as tracking
from tests.helpers import tiny_build_inputs

RUNTIME = get_format("gguf").runtime_module
N_CTX, CHUNKS = 64, 6


@pytest.fixture(scope="module")
def passes(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("chunks")
    gguf = tiny_build_inputs(tmp / "store", tiny_model_dir).base.path
    (tmp / "text.txt").write_text("A sentence about the weather, then one about the sea. " * 80)
    tokens = run_worker({"mode": "tokenize", "runtime": RUNTIME, "model": str(gguf),
                         "text_file": str(tmp / "text.txt")}, timeout_s=300)
    (tmp / "tokens.json").write_text(json.dumps(tokens))
    (tmp / "reference").mkdir()
    common = {"runtime": RUNTIME, "model": str(gguf), "tokens_file": str(tmp / "tokens.json"), "threads": 2,
              "n_gpu_layers": 0, "n_ctx": N_CTX}
    reference = run_worker({**common, "mode": "reference", "max_chunks": CHUNKS, "out_dir": str(tmp / "reference")},
                           timeout_s=300)
    quality = run_worker({**common, "mode": "quality", "reference_dir": str(tmp / "reference")}, timeout_s=300)
    return reference, quality, tmp


def test_each_chunks_means_make_the_runs_figures(passes):
    reference, quality, _ = passes
    base = reference[CHUNK_SERIES]["nll"]
    assert len(base) == CHUNKS and math.exp(sum(base) / CHUNKS) == pytest.approx(reference["perplexity"], rel=1e-12)
    series = quality[CHUNK_SERIES]
    assert {name: len(values) for name, values in series.items()} == {"nll": CHUNKS, "kld": CHUNKS, "top1": CHUNKS}
    assert math.exp(sum(series["nll"]) / CHUNKS) == pytest.approx(quality["perplexity"], rel=1e-12)
    assert sum(series["kld"]) / CHUNKS == pytest.approx(quality["kld_mean"], rel=1e-9, abs=1e-15)
    assert sum(series["top1"]) / CHUNKS == pytest.approx(quality["top1_agreement"], rel=1e-12)


def test_the_series_go_to_mlflow_and_come_back_in_chunk_order(passes, tmp_path):
    _, quality, _ = passes
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = tracking.ensure_experiment(client, "chunks", uri)
    run_id = tracking.start_run(client, experiment, name="v", tags={})
    tracking.log_series(client, run_id, quality[CHUNK_SERIES], prefix="chunk_")
    frame = with_chunk_series(uri, read_runs(uri), names=("kld", "nll"))
    row = frame[frame["run_id"] == run_id].iloc[0]
    assert row["chunks.kld"] == pytest.approx(quality[CHUNK_SERIES]["kld"])
    assert row["chunks.nll"] == pytest.approx(quality[CHUNK_SERIES]["nll"])
