"""GGUF packaging: an Ollama-ready folder per variant, with model card and sha256 manifest."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from tasks.card import hub_metadata, model_card
from tasks.core.naming import ollama_tag, variant_name
from tasks.formats.gguf.card import serving_section
from tasks.formats.gguf.chat_template import extract_parts, stop_sequences, to_go_template
from tasks.formats.gguf.config import PackageConfig
from tasks.formats.gguf.deploy.config import DeployConfig
from tasks.formats.gguf.deploy.validate import available_validators, check_deployment, validation_summary
from tasks.formats.gguf.deploy.write import VALIDATED, write_deployment
from tasks.serve.config import ServeConfig
from tasks.store.artifacts import link_or_copy, stored_step
from tasks.store.codeid import code_identity
from tasks.store.hashing import sha256_file


class PackagedVariant(BaseModel):
    folder: Path
    ollama_tag: str
    key: str
    reused: bool
    deploy_files: list[str] = []
    deploy_validation: str | None = None


def chat_facts(hf_dir: Path) -> tuple[str, str, int]:
    """(chat template, eos token text, context length) from an HF folder."""
    tokenizer_config = json.loads((hf_dir / "tokenizer_config.json").read_text())
    template_file = hf_dir / "chat_template.jinja"
    template = template_file.read_text() if template_file.is_file() else tokenizer_config.get("chat_template", "")
    eos = tokenizer_config.get("eos_token") or ""
    eos = eos.get("content", "") if isinstance(eos, dict) else eos
    model_config = json.loads((hf_dir / "config.json").read_text())
    return template, eos, int(model_config.get("max_position_embeddings", 4096))


def modelfile_text(gguf_name: str, hf_dir: Path, config: PackageConfig) -> str:
    """An Ollama Modelfile: FROM the GGUF, the translated TEMPLATE, stop tokens, context size."""
    template, eos, context = chat_facts(hf_dir)
    parts = extract_parts(template, eos_token=eos) if template else None
    go_template = config.ollama_template or (to_go_template(parts) if parts else "{{ .Prompt }}")
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{go_template}"""']
    for stop in (stop_sequences(parts, eos) if parts else [eos] if eos else []):
        lines.append(f'PARAMETER stop "{stop}"')
    lines.append(f"PARAMETER num_ctx {config.num_ctx or context}")
    return "\n".join(lines) + "\n"


def package_gguf_variant(
    gguf_path: Path, *, hf_dir: Path, model_name: str, quant: str, variant_key: str,
    metrics: dict, provenance: dict, config: PackageConfig, store_root: Path, serve: ServeConfig | None = None,
    deploy: DeployConfig | None = None, threads: int = 1,
) -> PackagedVariant:
    """Build (or reuse) the folder: GGUF, Modelfile, README.md model card (Hub metadata, served
    figures, targets), deployment files sized from the measured figures, manifest."""
    tag = ollama_tag(model_name, quant)
    serve = serve or ServeConfig(enabled=False)
    material = {"variant_key": variant_key, "metrics": metrics, "provenance": provenance,
                "code": code_identity(__name__),
                "config": config.model_dump(mode="json"), "serve": serve.model_dump(mode="json"),
                "deploy": deploy.model_dump(mode="json") if deploy else None, "threads": threads,
                # A host that gains (or loses) a validator checks its packages again.
                "validators": available_validators() if deploy else None}
    variant = variant_name(model_name, "gguf", quant)

    def build(tmp: Path) -> None:
        link_or_copy(gguf_path, tmp / gguf_path.name)
        (tmp / "Modelfile").write_text(modelfile_text(gguf_path.name, hf_dir, config))
        files = write_deployment(tmp, gguf=tmp / gguf_path.name, name=variant, ollama_tag=tag, hf_dir=hf_dir,
                                 metrics=metrics, n_ctx=serve.n_ctx, threads=threads, config=deploy) if deploy else []
        (tmp / "deploy-files.json").write_text(json.dumps(files))
        validation = check_deployment(tmp, [f for f in files if f in VALIDATED])
        (tmp / "deploy-validation.json").write_text(json.dumps(validation, indent=2))
        usage = serving_section(metrics, levels=serve.load.concurrency, server="llama-cpp-python's server",
                                ollama_tag=tag, gguf_name=gguf_path.name, n_ctx=serve.n_ctx, deploy_files=bool(files),
                                validation=validation, chat_template=bool(chat_facts(hf_dir)[0]))
        (tmp / "README.md").write_text(model_card(
            title=f"{model_name} {quant} (GGUF)",
            variant={"format": "gguf", "quant": quant, "file": gguf_path.name, "sha256": sha256_file(gguf_path)},
            provenance=provenance, metrics=metrics, usage=usage,
            metadata=hub_metadata(base_model=_base_model(config, provenance), license=provenance.get("license"),
                                  tags=["gguf", "slmforge", "quantized", quant.lower(), "llama-cpp"]),
        ))

    stored = stored_step(store_root, "package", material, build)
    deploy_files = json.loads((stored.path / "deploy-files.json").read_text())
    validation = json.loads((stored.path / "deploy-validation.json").read_text())
    return PackagedVariant(folder=stored.path, ollama_tag=tag, key=stored.key, reused=stored.reused,
                           deploy_files=[f for f in deploy_files if not f.startswith("tokenizer/")]
                           + (["deploy-validation.json"] if deploy_files else []),
                           deploy_validation=validation_summary(validation) if deploy_files else None)


def _base_model(config: PackageConfig, provenance: dict) -> str | None:
    source = str(provenance.get("source", ""))
    return config.base_model or (source.removeprefix("hub:") if source.startswith("hub:") else None)
