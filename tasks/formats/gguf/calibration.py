"""The calibration text of the importance matrix: never the evaluation text.

Built-in default: the docstrings of CPython 3.11.7's standard library (modules, classes and functions
of `Lib/*.py`, sorted by module), real prose written by CPython's authors (PSF licence), shipped with
slmforge so that every host computes the same matrix. The main evaluation text is CPython's
*language reference* (`pydoc_data.topics`, tasks.evaluate.corpus); the two overlap in a few sentences (a method
documented in both), so any docstring paragraph sharing a run of SHINGLE_WORDS words with the
language reference, or with any evaluation domain's text (tasks.evaluate.domains), is dropped: the
calibration text shares no such run with anything the variants are scored on.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.evaluate.corpus import TEXTS, BuiltinCorpus, FileCorpus, HubCorpus, load_corpus_text
from tasks.formats.gguf.sensitivity import LADDER_32, LADDER_256, TOP

SHINGLE_WORDS = 8  # a shared run of 8 words is a quotation, not a coincidence of phrasing


class StdlibDocstrings(BaseModel):
    """CPython's standard-library docstrings (PSF licence), minus anything shared with the evaluation text."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["builtin"] = Field("builtin", description="CPython's standard-library docstrings.")


CalibrationText = Annotated[StdlibDocstrings | FileCorpus | HubCorpus, Field(discriminator="kind")]


class CalibrationConfig(BaseModel):
    """How the importance matrix is computed (llama-imatrix's settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    text: CalibrationText = Field(default_factory=StdlibDocstrings, description="Calibration text (not the eval text).")
    chunks: int = Field(32, ge=1, description="Chunks of n_ctx tokens read by llama-imatrix (--chunks).")
    n_ctx: int = Field(512, ge=64, description="Chunk length in tokens (llama-imatrix -c).")
    sensitivity_chunks: int = Field(4, ge=1, description="Calibration chunks scored per probe when measuring "
                                                        "the sensitivity table of budget mixes.")
    sensitivity_types: list[str] | None = Field(
        None, description="Types a budget mix may give a tensor group (default: Q8_0 Q6_K Q5_K Q4_K IQ4_XS Q3_K Q2_K "
                          "for 256-divisible rows, Q8_0 Q5_1 Q5_0 Q4_1 Q4_0 IQ4_NL otherwise); one probe each.")

    @field_validator("sensitivity_types")
    @classmethod
    def _ladder_types(cls, types: list[str] | None) -> list[str] | None:
        if types is None:
            return None
        upper = [t.upper() for t in types]
        if unknown := [t for t in upper if t not in LADDER_256 + LADDER_32]:
            raise ValueError(f"sensitivity_types {unknown} are not mix candidates; "
                             f"choose from {', '.join(dict.fromkeys(LADDER_256 + LADDER_32))}")
        if TOP not in upper:
            raise ValueError(f"sensitivity_types must include {TOP}, the type every other group is held at")
        return upper


def calibration_text(text: StdlibDocstrings | FileCorpus | HubCorpus, evaluation: list | None = None
                     ) -> tuple[str, str]:
    """(the text, a short name of it for file names and the GGUF's quantize.imatrix.dataset).

    The built-in text drops every paragraph sharing a run of SHINGLE_WORDS words with any of the
    `evaluation` texts (default: the built-in language reference alone)."""
    if isinstance(text, StdlibDocstrings):
        corpora = evaluation if evaluation is not None else [BuiltinCorpus()]
        avoid = "\n\n".join(load_corpus_text(corpus, where="evaluate") for corpus in corpora)
        return disjoint_from(stdlib_docstrings(), avoid), "cpython-stdlib-docstrings"
    if isinstance(text, FileCorpus):
        return load_corpus_text(text), Path(text.path).stem
    return load_corpus_text(text), text.dataset.replace("/", "-")


# CPython 3.11.7's standard-library docstrings, shipped with slmforge (tasks/evaluate/texts/README.md:
# how they were read, their licence): read from the running Python, every Python release gave another
# text and so another importance matrix (Q4_K_M-imat's KLD 0.03109 with 3.11.7, 0.03044 with Debian's
# 3.11.2 on the same model), and figures of two hosts would not compare.
STDLIB_DOCSTRINGS = TEXTS / "cpython-3.11.7-stdlib-docstrings.txt"


@functools.cache
def stdlib_docstrings() -> str:
    """Every docstring of 200 characters or more of CPython 3.11.7's pure-Python standard library
    (modules, classes, functions), in a stable order."""
    return STDLIB_DOCSTRINGS.read_text(encoding="utf-8")


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def shingles(text: str, n: int = SHINGLE_WORDS) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@functools.cache
def disjoint_from(text: str, evaluation: str) -> str:
    """`text` without the paragraphs that share a run of SHINGLE_WORDS words with `evaluation`."""
    banned = shingles(evaluation)
    kept = [p for p in text.split("\n\n") if not (shingles(p) & banned)]
    return "\n\n".join(kept)
