"""The evaluation text: a built-in real human-written corpus, a text file, or a hub dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.errors import SourceError
from tasks.store.hashing import sha256_json


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuiltinCorpus(_Strict):
    """The Python Language Reference as shipped inside CPython (`pydoc_data.topics`).

    Real prose and code written by CPython's authors, not for slmforge, present offline on every
    Python install (PSF licence). The topics are joined in sorted order, so the text is stable
    for a given Python release.
    """

    kind: Literal["builtin"] = Field("builtin", description="CPython's language reference text.")


class FileCorpus(_Strict):
    kind: Literal["file"] = Field(description="A UTF-8 text file.")
    path: Path = Field(description="Path of the text file, e.g. wiki.test.raw.")


class HubCorpus(_Strict):
    kind: Literal["hub"] = Field(description="A dataset on the hub, read with `datasets`.")
    dataset: str = Field(description="Dataset id, e.g. 'Salesforce/wikitext'.")
    config_name: str | None = Field(None, description="Dataset config, e.g. 'wikitext-2-raw-v1'.")
    split: str = Field("test", description="Split to read.")
    column: str = Field("text", description="Text column; rows are joined with newlines.")
    revision: str | None = Field(None, description="Dataset revision to pin.")


CorpusConfig = Annotated[BuiltinCorpus | FileCorpus | HubCorpus, Field(discriminator="kind")]


def load_corpus_text(corpus: BuiltinCorpus | FileCorpus | HubCorpus) -> str:
    """The evaluation text for `corpus`, or a SourceError saying how to fix it."""
    if isinstance(corpus, BuiltinCorpus):
        import pydoc_data.topics as topics  # Python's doc text (large): only for the built-in corpus

        return "\n\n".join(topics.topics[name] for name in sorted(topics.topics))
    if isinstance(corpus, FileCorpus):
        if not corpus.path.is_file():
            raise SourceError(f"Evaluation text {corpus.path} does not exist; check `evaluate.corpus.path`.")
        return corpus.path.read_text(encoding="utf-8")
    return _load_hub_dataset(corpus)


def _load_hub_dataset(corpus: HubCorpus) -> str:
    try:
        import datasets  # datasets: an optional extra, only for a Hub corpus
    except ImportError as exc:
        raise SourceError("A hub corpus needs the `datasets` package: pip install datasets") from exc
    rows = datasets.load_dataset(
        corpus.dataset, corpus.config_name, split=corpus.split, revision=corpus.revision
    )
    if corpus.column not in rows.column_names:
        raise SourceError(
            f"Dataset {corpus.dataset!r} has no column {corpus.column!r}; columns: {rows.column_names}."
        )
    return "\n".join(rows[corpus.column])


# Enough text to hold one chunk at any n_ctx up to this many bytes per token (far above real tokenizers).
PREFIX_BYTES_PER_TOKEN = 64


def short_text_problem(path: Path, n_ctx: int, tokenizer_file: Path | None = None) -> str | None:
    """Why the text file cannot fill one chunk of `n_ctx` tokens (no chunk, no perplexity), else None.

    Cheap: a token covers at least one byte, so a file shorter than n_ctx bytes is too short for any
    tokenizer; with the model's `tokenizer.json` the count is exact (the BOS token counted too).
    """
    size = path.stat().st_size
    if size + 1 < n_ctx:
        return (f"{path} has {size} bytes, fewer than the {n_ctx} tokens of one chunk (evaluate.n_ctx); "
                "use a longer text or a smaller evaluate.n_ctx")
    if tokenizer_file is None or not tokenizer_file.is_file() or size > n_ctx * PREFIX_BYTES_PER_TOKEN:
        return None
    from tokenizers import Tokenizer  # tokenizers: only where a corpus is counted

    count = len(Tokenizer.from_file(str(tokenizer_file)).encode(path.read_text(encoding="utf-8", errors="replace"),
                                                                 add_special_tokens=False).ids) + 1
    if count < n_ctx:
        return (f"{path} has {count} tokens, fewer than one chunk of evaluate.n_ctx={n_ctx}; use a longer text "
                "or a smaller evaluate.n_ctx")
    return None


def corpus_identity(text: str) -> str:
    """Hash of the text itself, so a changed corpus invalidates cached quality figures."""
    return sha256_json(text)
