"""llama-cpp-python's OpenAI-compatible server with one chat format added: `prompt-only`.

A GGUF without a chat template (a pretrained, not instruction-tuned model: Gemma 3 270M's
published weights have none) gets llama-cpp-python's silent fallback, the Llama-2 `[INST]`
format, which such a model never saw: Gemma 3 270M answered every served prompt with an
immediate end of text (an empty string), while offline the same file answered, because slmforge
renders a template-less model's prompt as the message text itself (BOS first), and so does the
packaged Ollama Modelfile (`TEMPLATE {{ .Prompt }}`). `prompt-only` is that rendering on the
server: the messages' text, BOS first, so the served model is the model that was measured.

Run: API_KEY=... python -m tasks.formats.gguf.llama_cpp_server --model FILE --chat_format prompt-only [llama_cpp.server options]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

PROMPT_ONLY = "prompt-only"


def format_prompt_only(messages: list[dict[str, Any]], **_: Any):
    """The conversation as plain text: each message's text, blank-line separated (one user message:
    exactly its text). added_special False: the handler then lets the tokenizer add BOS, as offline."""
    # llama.cpp's binding: native library, only where a model runs
    from llama_cpp.llama_chat_format import ChatFormatterResponse

    texts = [message["content"] for message in messages if isinstance(message.get("content"), str)]
    return ChatFormatterResponse(prompt="\n\n".join(texts), added_special=False)


def has_chat_template(gguf: Path) -> bool:
    """Whether the GGUF carries a chat template (`tokenizer.chat_template`), as llama-cpp-python sees it.
    Its vocabulary-only load takes about 2 s on a 262k vocabulary; gguf's GGUFReader took 33 s."""
    from llama_cpp import Llama  # llama.cpp's binding: native library, only where a model runs

    vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    return "tokenizer.chat_template" in vocab.metadata


def llama_cpp_command(gguf: Path, *, port: int, n_ctx: int, threads: int, chat_template: bool = True) -> list[str]:
    """llama-cpp-python's server on one GGUF. With a chat template in the file (`chat_template`),
    chat_format stays unset, so the server renders prompts with that template; without one, the
    server's own fallback (Llama-2 `[INST]`) would be used, so the prompt-only format is named
    instead (this module: the message text, as measured offline)."""
    module, extra = ("llama_cpp.server", []) if chat_template else (
        "tasks.formats.gguf.llama_cpp_server", ["--chat_format", PROMPT_ONLY])
    return [sys.executable, "-m", module, "--model", str(gguf), "--model_alias", gguf.stem,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads),
            "--n_threads_batch", str(threads),
            # Its default stops a running request when another arrives: concurrent clients would fail.
            "--interrupt_requests", "false", *extra]


def main() -> None:
    # llama.cpp's binding: native library, only where a model runs
    from llama_cpp.llama_chat_format import register_chat_format
    from llama_cpp.server.__main__ import main as server_main

    register_chat_format(PROMPT_ONLY)(format_prompt_only)
    server_main()


if __name__ == "__main__":
    main()
