"""A test-only format: the f16 Hugging Face folder itself, run by transformers/PyTorch.

It proves the format interface: registered from tests/ with one call
(`tasks.formats.register_format("hf-torch", "tests.formats.hf_torch")`), it goes through the whole
flow (build, measure against the stored reference, gate, package, MLflow) with no change outside
this folder.
"""

from __future__ import annotations

from pathlib import Path

from tasks.formats.base import BaseArtifact, Built, BuildInputs, Packaged, PackageInputs
from tests.formats.hf_torch.config import HfTorchConfig


class HfTorchFormat:
    name = "hf-torch"
    config_model = HfTorchConfig
    runtime_module = "tests.formats.hf_torch.runtime"
    measure_tools = ("torch", "transformers")

    def variants(self, config: HfTorchConfig) -> list[str]:
        return [config.dtype]

    def build(self, quant: str, inputs: BuildInputs, config: HfTorchConfig) -> Built:
        # Nothing to build: the acquired folder is the artefact (its manifest hash is its key).
        return Built(format=self.name, quant=quant, path=inputs.hf_dir, key=inputs.hf_identity, reused=True,
                     request={"dtype": config.dtype})

    def size_facts(self, built: Built, base: BaseArtifact) -> dict[str, float]:
        weights = sum(p.stat().st_size for p in Path(built.path).glob("*.safetensors"))
        return {"size_bytes": weights, "bits_per_weight": weights * 8 / base.n_weights,
                "n_weights": base.n_weights, "weight_bytes": weights}

    def package(self, built: Built, inputs: PackageInputs, config: HfTorchConfig) -> Packaged:
        from tasks.card import model_card
        from tasks.store.artifacts import link_or_copy, stored_step

        def build(tmp: Path) -> None:
            for item in Path(built.path).iterdir():
                if item.is_file() and item.name != "slmforge-manifest.json":
                    link_or_copy(item, tmp / item.name)
            (tmp / "README.md").write_text(model_card(
                title=f"{inputs.model_name} ({self.name})", variant={"format": self.name, "quant": built.quant},
                provenance=inputs.provenance, metrics=inputs.metrics, usage="transformers.AutoModelForCausalLM"))

        stored = stored_step(inputs.store_root, "hf-torch-package", {"key": built.key, "metrics": inputs.metrics}, build)
        return Packaged(folder=stored.path, key=stored.key, reused=stored.reused, label="transformers folder",
                        files_to_track=["README.md"])


FORMAT = HfTorchFormat()
