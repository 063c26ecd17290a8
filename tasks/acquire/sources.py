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


class GgufSource(_Strict):
    """A GGUF file, on disk or shipped inside an installed Python package."""

    kind: Literal["gguf"] = Field(description="Dequantize a GGUF file into an HF folder.")
    path: Path | None = Field(None, description="Path of a .gguf file on disk.")
    package: str | None = Field(None, description="Installed package that ships the file.")
    file: str | None = Field(None, description="File name inside `package` (with `assemble`: the name to give it).")
    assemble: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="For a GGUF shipped in chunk packages: the function of `package` that writes the whole "
        "file to `output_path` and returns it (e.g. `assemble`); the file goes to the user cache.",
    )

    @model_validator(mode="after")
    def _one_location(self) -> GgufSource:
        if (self.path is None) == (self.package is None or self.file is None):
            raise ValueError("give either `path`, or both `package` and `file`")
        if self.assemble and self.package is None:
            raise ValueError("`assemble` names a function of `package`: give `package` and `file` with it")
        return self


ModelSource = Annotated[HubSource | LocalSource | GgufSource, Field(discriminator="kind")]
