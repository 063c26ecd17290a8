"""An evaluation text: a built-in real human-written corpus, files of an installed registry package,
a text file, or a hub dataset; each may be pinned by the sha256 of its text.

A pin is what makes two hosts' figures comparable: a package's files are whatever version is
installed, a file whatever it holds now (the built-in text is a copy shipped with slmforge). With `sha256` set, a text that differs is
refused before any work, with both hashes and what to do.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.errors import SourceError
from tasks.store.hashing import sha256_json

# Texts shipped with slmforge (texts/README.md says where they come from and their licence): the default
# main evaluation text, and the importance matrix's default calibration text.
TEXTS = Path(__file__).parent / "texts"
BUILTIN_TEXT = TEXTS / "python-3.11.7-language-reference.txt"

SHA256_PATTERN = r"^[0-9a-f]{64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sha256: str | None = Field(
        None, pattern=SHA256_PATTERN,
        description="sha256 of the text (UTF-8, as loaded); a text that differs is refused. Pin it so that "
                    "figures measured on two hosts are measured on the same text.",
    )


class BuiltinCorpus(_Strict):
    """The Python Language Reference of CPython 3.11.7 (`pydoc_data.topics`, the topics joined in sorted
    order), shipped with slmforge (BUILTIN_TEXT, PSF licence beside it).

    Real prose and code written by CPython's authors, not for slmforge. It used to be read from the
    running Python, but every Python release ships another text (Debian's 3.11.2 differs from 3.11.7), so
    two hosts measured different texts, and once the text was pinned a newcomer with another Python could
    not run the default config at all. The shipped copy is byte for byte the text every figure so far was
    measured on (sha256 71f2ff5d...).
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


class PackageCorpus(_Strict):
    """Files of an installed registry package, e.g. a library's source code or a dialog corpus.

    Installed by the README's set-up (pyproject pins the version), read through the distribution's
    own file list, never imported. `layout: conversations` reads YAML files holding a
    `conversations:` list of turn lists (the ChatterBot corpus format): its text is one turn a line,
    a blank line between conversations; a chat domain renders the turns through the model's template.
    """

    kind: Literal["package"] = Field(description="Files of an installed registry package.")
    package: str = Field(description="Distribution name, e.g. 'six'.")
    version: str = Field(description="The version the sha256 is that of, e.g. '1.17.0'.")
    members: list[str] = Field(min_length=1, description="Files in the distribution (globs allowed), in order; "
                                                         "each glob's matches in sorted order, each file once.")
    layout: Literal["text", "conversations"] = Field("text", description="Plain text, or ChatterBot-style YAML "
                                                                         "conversations.")


CorpusConfig = Annotated[BuiltinCorpus | FileCorpus | HubCorpus | PackageCorpus, Field(discriminator="kind")]
AnyCorpus = BuiltinCorpus | FileCorpus | HubCorpus | PackageCorpus


def load_corpus_text(corpus: AnyCorpus, *, where: str = "evaluate.corpus") -> str:
    """The text of `corpus`, checked against its pin; a SourceError saying how to fix it.

    `where`: the config key the corpus sits at, named in the errors."""
    text = _read_text(corpus, where)
    check_pin(corpus, text, where)
    return text


def load_conversations(corpus: PackageCorpus, *, where: str) -> list[list[str]]:
    """The conversations of a `layout: conversations` package corpus (its text checked against the pin)."""
    conversations = _package_conversations(corpus, where)
    check_pin(corpus, conversations_text(conversations), where)
    return conversations


def check_pin(corpus: AnyCorpus, text: str, where: str) -> None:
    if corpus.sha256 is None:
        return
    found = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if found != corpus.sha256:
        origin = (f"{BUILTIN_TEXT} is not the copy slmforge shipped" if corpus.kind == "builtin"
                  else "the text changed since it was pinned")
        raise SourceError(
            f"{where}: the text has sha256 {found}, the config pins {corpus.sha256} ({origin}). Figures measured "
            f"on another text do not compare with the pinned one's. Restore the pinned text (for a package: "
            f"pip install the pinned version), or set `{where}.sha256: {found}` to measure on this one."
        )


def _read_text(corpus: AnyCorpus, where: str) -> str:
    if isinstance(corpus, BuiltinCorpus):
        return BUILTIN_TEXT.read_text(encoding="utf-8")
    if isinstance(corpus, FileCorpus):
        if not corpus.path.is_file():
            raise SourceError(f"Evaluation text {corpus.path} does not exist; check `{where}.path`.")
        return corpus.path.read_text(encoding="utf-8")
    if isinstance(corpus, PackageCorpus):
        if corpus.layout == "conversations":
            return conversations_text(_package_conversations(corpus, where))
        return "\n\n".join(path.read_text(encoding="utf-8") for path in package_members(corpus, where))
    return _load_hub_dataset(corpus)


def conversations_text(conversations: list[list[str]]) -> str:
    return "\n\n".join("\n".join(turns) for turns in conversations)


def package_members(corpus: PackageCorpus, where: str) -> list[Path]:
    """The member files of an installed, pinned distribution, in the configured order."""
    install = f"pip install {corpus.package}=={corpus.version}"
    found = list(importlib.metadata.Distribution.discover(name=corpus.package, path=sys.path))
    if not found:
        raise SourceError(f"{where}: package {corpus.package!r} is not installed ({install}, or `make setup`).")
    dist = found[0]
    if dist.version != corpus.version:
        raise SourceError(f"{where}: package {corpus.package!r} is version {dist.version}, the text is that of "
                          f"{corpus.version} ({install}).")
    listed = sorted(f.as_posix() for f in dist.files or [])
    paths: list[Path] = []
    for pattern in corpus.members:
        matches = [name for name in listed if fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            raise SourceError(f"{where}.members: no file of {corpus.package} {corpus.version} matches {pattern!r} "
                              f"(it has e.g. {[n for n in listed if not n.endswith('.pyc')][:5]}).")
        # A later, wider glob may match files listed before it: each file once, where it first came.
        paths += [path for name in matches if (path := Path(str(dist.locate_file(name)))) not in paths]
    return paths


def _package_conversations(corpus: PackageCorpus, where: str) -> list[list[str]]:
    if corpus.layout != "conversations":
        raise SourceError(f"{where}: a chat domain needs conversations; set `{where}.layout: conversations` "
                          "on a package of ChatterBot-style YAML files.")
    import yaml  # PyYAML: a dependency already (configs)

    conversations: list[list[str]] = []
    for path in package_members(corpus, where):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        listed = data.get("conversations") if isinstance(data, dict) else None
        if not isinstance(listed, list):
            raise SourceError(f"{where}: {path} has no `conversations:` list (layout: conversations expects "
                              "ChatterBot-style YAML).")
        # A turn may be a YAML number or date; the text is what a user would have typed.
        conversations += [[str(turn).strip() for turn in c] for c in listed if isinstance(c, list) and c]
    return conversations


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
