"""The real calibration text (CPython's stdlib docstrings, read whole) shares no run of words with
the evaluation text, and llama.cpp's tools are the binding's own build (one compile)."""

from __future__ import annotations

from tasks.evaluate.corpus import BuiltinCorpus, load_corpus_text
from tasks.formats.gguf.calibration import (
    SHINGLE_WORDS, StdlibDocstrings, calibration_text, shingles, stdlib_docstrings,
)
from tasks.formats.gguf.llama_tools import BUILD_SCRIPT, TOOLS_VERSION, same_build_as_binding
from tasks.store.versions import package_version


def test_tools_are_built_from_the_binding_s_own_llama_cpp():
    assert f"VERSION={TOOLS_VERSION}\n" in BUILD_SCRIPT.read_text()
    assert package_version("llama-cpp-python") == TOOLS_VERSION
    # One compile: the tools and the installed binding load the same libllama, byte for byte.
    assert same_build_as_binding()


def test_calibration_text_shares_no_run_of_words_with_the_evaluation_text():
    evaluation = load_corpus_text(BuiltinCorpus())
    text, name = calibration_text(StdlibDocstrings())
    assert name == "cpython-stdlib-docstrings" and len(text) > 500_000  # far more than 32 chunks of 512 tokens
    assert not shingles(text) & shingles(evaluation)  # no evaluation chunk quotes the calibration text
    assert shingles(stdlib_docstrings()) & shingles(evaluation)  # the filter had something to remove
    assert SHINGLE_WORDS <= 8


def test_the_calibration_text_is_the_same_bytes_whatever_python_runs(tmp_path, monkeypatch):
    # Read from the running Python's Lib/, Debian's 3.11.2 gave another text than 3.11.7, so another
    # importance matrix and other Q4_K_M-imat figures for the same model and config.
    import hashlib
    import sysconfig

    from tasks.formats.gguf import calibration

    other_lib = tmp_path / "lib"
    other_lib.mkdir()
    (other_lib / "module.py").write_text('"""' + "Another release words its docstrings otherwise. " * 8 + '"""\n')
    paths = sysconfig.get_paths()
    monkeypatch.setattr(sysconfig, "get_paths", lambda *args, **kwargs: {**paths, "stdlib": str(other_lib)})
    calibration.stdlib_docstrings.cache_clear()
    text = calibration.stdlib_docstrings()
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == (
        "3cea50688117750aadbf7e441930eebe1360681114cfef308b9bc8435f62beef")  # the text 3.11.7 gave


def test_calibration_text_shares_no_run_of_words_with_any_evaluation_domain():
    from tasks.config import load_config
    from tests.helpers import REPO

    evaluate = load_config(REPO / "configs" / "default.yaml").evaluate
    assert len(evaluate.corpora()) >= 4  # prose, code, chat, non-English
    text, _ = calibration_text(StdlibDocstrings(), evaluate.corpora())
    words = shingles(text)
    for corpus in evaluate.corpora():
        assert not words & shingles(load_corpus_text(corpus, where="evaluate")), corpus
