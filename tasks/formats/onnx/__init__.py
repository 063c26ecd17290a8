"""ONNX Runtime GenAI through Microsoft Olive: export per precision, measure with onnxruntime-genai,
package a GenAI folder checked by serving it."""

from __future__ import annotations

from tasks.formats.base import BaseArtifact, Built, BuildInputs, Packaged, PackageInputs
from tasks.formats.onnx.config import OnnxTargets


class OnnxFormat:
    name = "onnx"
    config_model = OnnxTargets
    runtime_module = "tasks.formats.onnx.runtime"
    measure_tools = ("onnxruntime", "onnxruntime-genai")

    def variants(self, config: OnnxTargets) -> list[str]:
        return list(config.precisions)

    def installation_problems(self, config: OnnxTargets) -> list[str]:
        """Olive / GenAI / ORT releases that break each other: found now, not after an hour of GGUF work."""
        from tasks.formats.onnx.export import check_onnx_versions  # the registry loads no runtime

        return [f"formats: 'onnx': {problem}" for problem in check_onnx_versions()]

    def refusal(self, architecture: str, config: OnnxTargets) -> str | None:
        # the registry loads no runtime: config parsing stays light
        from tasks.formats.onnx.support import unsupported_reason

        return unsupported_reason(architecture)

    def build(self, quant: str, inputs: BuildInputs, config: OnnxTargets) -> Built:
        # the registry loads no runtime: config parsing stays light
        from tasks.formats.onnx.build import export_onnx_variant

        result = export_onnx_variant(inputs.hf_dir, identity=inputs.hf_identity, model_name=inputs.model_name,
                                     precision=quant, targets=config, store_root=inputs.store_root)
        return Built(format=self.name, quant=quant, path=result.folder, key=result.key, reused=result.reused,
                     build_s=result.wall_s, versions=result.versions)

    def size_facts(self, built: Built, base: BaseArtifact) -> dict[str, float]:
        # the registry loads no runtime: config parsing stays light
        from tasks.formats.onnx.facts import onnx_size_facts

        return onnx_size_facts(built.path, n_weights=base.n_weights)

    def serve(self, built: Built, inputs: PackageInputs, config: OnnxTargets):
        """Serve the folder on loopback through its own runtime, check its answers, load it."""
        from tasks.formats.onnx.serving import serve_onnx  # the registry loads no runtime: config parsing stays light

        return serve_onnx(built, inputs, config.serve) if config.serve.enabled else None

    def package(self, built: Built, inputs: PackageInputs, config: OnnxTargets) -> Packaged:
        # the registry loads no runtime: config parsing stays light
        from tasks.formats.onnx.package import package_onnx_variant

        provenance = {**inputs.provenance, **built.versions, "export": config.export_config(built.quant).model_dump()}
        result = package_onnx_variant(
            built.path, hf_dir=inputs.hf_dir, model_name=inputs.model_name, precision=built.quant,
            variant_key=built.key, metrics=inputs.metrics, provenance=provenance, targets=config,
            store_root=inputs.store_root, threads=inputs.threads,
        )
        return Packaged(folder=result.folder, key=result.key, reused=result.reused,
                        label=f"smoke answer {result.smoke_answer[:60]!r}",
                        files_to_track=["README.md", "smoke_test.json", "slmforge-manifest.json"])


FORMAT = OnnxFormat()
