"""Up-front checks of the importance-matrix features that need the whole pipeline config."""

from __future__ import annotations

from pathlib import Path

from tasks.core.errors import SourceError
from tasks.formats.gguf.llama_tools import tool_path, BUILD_SCRIPT, same_build_as_binding


def calibration_is_evaluation_problem(gguf_config, eval_corpora: list) -> str | None:
    """The calibration text must never be an evaluation text, the main one or a domain's (the KLD
    would be scored on what was fit)."""
    return next(filter(None, (_same_text_problem(gguf_config, corpus) for corpus in eval_corpora)), None)


def _same_text_problem(gguf_config, eval_corpus) -> str | None:
    text = gguf_config.calibration.text
    if text.kind == "builtin" or text.kind != eval_corpus.kind:
        return None  # the built-in calibration text is filtered against every evaluation text
    if text.kind == "file":
        same = Path(text.path).resolve() == Path(eval_corpus.path).resolve()
    else:
        same = (text.dataset, text.config_name, text.split) == (eval_corpus.dataset, eval_corpus.config_name,
                                                                eval_corpus.split)
    if not same:
        return None
    return ("formats.gguf.calibration.text: the importance matrix would be computed from the evaluation text "
            f"({eval_corpus}); give another text (or leave it out for CPython's stdlib docstrings)")


def tool_problems(gguf_config) -> list[str]:
    """llama-imatrix / llama-quantize missing while a configured variant needs them."""
    if all(r.plain for r in gguf_config.recipes()) and not gguf_config.targets:
        return []

    problems = []
    for name in ("llama-imatrix", "llama-quantize"):
        try:
            tool_path(name)
        except SourceError as exc:
            problems.append(f"formats.gguf: {exc}")
    if not problems and not same_build_as_binding():
        # Tools of another llama.cpp than the binding's would make files the binding did not
        # measure the same way: one compile for both is the rule.
        problems.append("formats.gguf: the installed llama-cpp-python is not the wheel of the tools' own build "
                        f"(tools.json); run `PYTHON=.venv/bin/python bash {BUILD_SCRIPT}` to install it")
    return problems


def installed_quant_type_problems(gguf_config) -> list[str]:
    """Types the static table accepts but the installed llama-cpp-python lacks (an upgrade drift)."""
    import llama_cpp  # llama.cpp's binding: native library, only when GGUF is configured

    types = [r.type for r in gguf_config.recipes()]
    missing = [t for t in types if not hasattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{t}")]
    problems = [f"formats.gguf.types: {missing} unknown to the installed llama-cpp-python"] if missing else []
    return problems + tool_problems(gguf_config)  # imatrix / override variants need llama.cpp's tools
