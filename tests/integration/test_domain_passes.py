"""Evaluation domains through the real workers (tokenize, reference, quality on a tiny random-weight
GGUF with the embedded model's tokenizer and chat template): the main text's figures are the same
digits with or without domains beside it, each domain gets its own figures and chunk series, and a
chat domain is scored with the template's special tokens as a server would send them."""

import json

import pytest

from tasks.evaluate.domains import SUMMARY_KLD
from tasks.evaluate.process import run_worker
from tasks.formats import get_format
from tasks.core.intervals import CHUNK_SERIES
from tests.helpers import tiny_build_inputs

RUNTIME = get_format("gguf").runtime_module
N_CTX = 64
CONVERSATIONS = [["Good morning, how are you?", "I am doing well, how about you?", "I'm also good."],
                 ["What is your favorite book?", "I can't read.", "So what's your favorite color?", "Blue"]] * 12


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("domains")
    gguf = tiny_build_inputs(tmp / "store", tiny_model_dir).base.path
    (tmp / "text.txt").write_text("A sentence about the weather, then one about the sea. " * 60)
    domains = {"code": {"render": "text", "text": "def add(a, b):\n    return a + b\n\n" * 60},
               "chat": {"render": "chat", "conversations": CONVERSATIONS}}
    (tmp / "domains.json").write_text(json.dumps(domains))
    tokens = run_worker({"mode": "tokenize", "runtime": RUNTIME, "model": str(gguf), "text_file": str(tmp / "text.txt"),
                         "domains_file": str(tmp / "domains.json")}, timeout_s=300)
    (tmp / "tokens.json").write_text(json.dumps(tokens))
    common = {"runtime": RUNTIME, "model": str(gguf), "tokens_file": str(tmp / "tokens.json"), "threads": 2,
              "n_gpu_layers": 0, "n_ctx": N_CTX}
    out = {"tokens": tokens, "gguf": gguf}
    for name, domain_chunks in (("alone", {}), ("beside", {"code": 2, "chat": 3})):
        (tmp / name).mkdir()
        out[name] = run_worker({**common, "mode": "reference", "max_chunks": 3, "domain_chunks": domain_chunks,
                                "out_dir": str(tmp / name)}, timeout_s=300)
        out[f"{name} quality"] = run_worker({**common, "mode": "quality", "reference_dir": str(tmp / name)},
                                            timeout_s=300)
    return out


def test_the_main_texts_figures_are_the_same_digits_with_domains_beside_it(runs):
    alone, beside = runs["alone quality"], runs["beside quality"]
    main = [k for k, v in alone.items() if isinstance(v, float)]
    assert "kld_mean" in main and "perplexity" in main
    assert {k: beside[k] for k in main} == {k: alone[k] for k in main}
    assert runs["beside"]["perplexity"] == runs["alone"]["perplexity"]
    assert beside[CHUNK_SERIES]["kld"] == alone[CHUNK_SERIES]["kld"]
    assert SUMMARY_KLD not in alone and not any("/" in k for k in alone)


def test_each_domain_has_its_own_figures_chunks_and_series(runs):
    reference, quality = runs["beside"], runs["beside quality"]
    assert reference["domains"]["code"]["first_chunk"] == 3 and reference["domains"]["chat"]["first_chunk"] == 5
    assert (reference["code/chunks"], reference["chat/chunks"]) == (2, 3)
    for name, chunks in (("code", 2), ("chat", 3)):
        assert quality[f"{name}/chunks"] == chunks
        # The base scored against its own reference: ~0 only if each domain chunk was compared with its
        # own stored chunk (a chunk numbered wrong would be scored against another passage's logits).
        assert abs(quality[f"{name}/kld_mean"]) < 1e-4 and quality[f"{name}/top1_agreement"] > 0.99
        assert len(quality[CHUNK_SERIES][f"{name}/kld"]) == chunks
        assert quality[f"{name}/perplexity"] != quality["perplexity"]
    expected = (quality["kld_mean"] + quality["code/kld_mean"] + quality["chat/kld_mean"]) / 3
    assert quality[SUMMARY_KLD] == pytest.approx(expected, rel=1e-12)


def test_a_chat_domain_is_tokenized_through_the_template_with_its_special_tokens(runs):
    from llama_cpp import Llama

    vocab = Llama(model_path=str(runs["gguf"]), vocab_only=True, verbose=False)
    start = vocab.tokenize(b"<|im_start|>", add_bos=False, special=True)
    assert len(start) == 1  # one special token, as a server parses the rendered template
    ids = runs["tokens"]["domains"]["chat"]["tokens"]
    turns = sum(len(c) for c in CONVERSATIONS)
    # every turn opens with <|im_start|>, and the template adds a system turn to each conversation
    assert ids.count(start[0]) == turns + len(CONVERSATIONS)
    text = vocab.detokenize(ids[:60], special=True).decode()
    assert text.startswith("<|im_start|>system") and "<|im_start|>user\nGood morning, how are you?<|im_end|>" in text
    # the plain text domain is tokenized as the main text is: no special token parsed
    assert start[0] not in runs["tokens"]["domains"]["code"]["tokens"]
