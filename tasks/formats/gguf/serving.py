"""The GGUF serving check: llama-cpp-python's OpenAI-compatible server on the variant's file.

The server applies the chat template stored in the GGUF (`tokenizer.chat_template`, written by the
converter from the model's own template), which is the template the offline prompt suite used; a
GGUF without one is served with the prompt-only format (the message text), as it was measured.
"""

from __future__ import annotations

from tasks.formats.base import Built, PackageInputs
from tasks.formats.gguf.llama_cpp_server import has_chat_template
from tasks.formats.gguf.llama_cpp_server import llama_cpp_command
from tasks.hosts.processes import free_port
from tasks.plan.guard import check_llama_pass
from tasks.serve.check import ServeResult, serve_and_check
from tasks.serve.config import ServeConfig
from tasks.serve.server import running_server
from tasks.store.versions import package_version


def serve_gguf(built: Built, inputs: PackageInputs, config: ServeConfig) -> ServeResult:
    threads = config.server_threads(inputs.threads)
    chat_template = has_chat_template(built.path)

    def start():
        check_llama_pass(f"serve {built.quant}", built.path, model_file=built.path, n_ctx=config.n_ctx, logits_rows=1,
                         quant=built.quant)
        port = free_port()
        command = llama_cpp_command(built.path, port=port, n_ctx=config.n_ctx, threads=threads,
                                    chat_template=chat_template)
        return running_server(command, port=port, model=built.path.stem, startup_timeout_s=config.startup_timeout_s)

    return serve_and_check(
        start, identity={"variant_key": built.key, "threads": threads, "chat_template": chat_template,
                         "hardware": inputs.provenance.get("measured_on")},
        offline_rows=inputs.metrics.get("prompts"), config=config, threads=threads,
        server_label=f"llama-cpp-python[server] {package_version('llama-cpp-python')}", store_root=inputs.store_root,
        code_modules=(__name__,),  # its closure holds the prompt-only server it may start
    )
