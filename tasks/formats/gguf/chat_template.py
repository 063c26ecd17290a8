"""Translate a Hugging Face (Jinja) chat template into an Ollama (Go) template.

Most chat templates wrap each message as prefix(role) + content + suffix(role). Rendering the
model's own template on a few probe conversations reveals those pieces, so no per-family table
is needed; `render_parts` replays them in Python and the tests check it against the Jinja output
on several conversations, which is what guarantees the Go template says the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2.sandbox import ImmutableSandboxedEnvironment

from tasks.core.errors import UnsupportedModelError

_BOS = "\x01BOS\x01"
_S, _U, _A, _U2 = "\x01SYSTEM\x01", "\x01USER\x01", "\x01ASSISTANT\x01", "\x01USER2\x01"


@dataclass(frozen=True)
class TemplateParts:
    default_system: str  # emitted when the conversation has no system message
    system: tuple[str, str]
    user: tuple[str, str]
    assistant: tuple[str, str]
    generation_prompt: str


def template_renderer(template: str, special: dict[str, str]):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env.globals["raise_exception"] = raise_exception
    compiled = env.from_string(template)

    def render(messages: list[tuple[str, str]], generation: bool) -> str:
        msgs = [{"role": role, "content": content} for role, content in messages]
        return compiled.render(messages=msgs, add_generation_prompt=generation, **special)

    return render


def extract_parts(template: str, *, eos_token: str = "") -> TemplateParts:
    """Probe `template` and return its per-role wrappers; UnsupportedModelError if it has none."""
    # BOS rendered as a sentinel so that only the template's own `bos_token` is removed
    # (the runtime adds BOS itself); a literal that happens to equal it stays.
    render = template_renderer(template, {"bos_token": _BOS, "eos_token": eos_token})
    try:
        only_user = render([("user", _U)], False)
        user_suffix = _after(only_user, _U)
        generation = render([("user", _U)], True)[len(only_user):]
        user_assistant = render([("user", _U), ("assistant", _A)], False)
        assistant_prefix = _between(user_assistant, _U + user_suffix, _A)
        assistant_suffix = _after(user_assistant, _A)
        two_turns = render([("user", _U), ("assistant", _A), ("user", _U2)], False)
        user_prefix = _between(two_turns, _A + assistant_suffix, _U2)
        with_system = render([("system", _S), ("user", _U)], False)
        system_prefix = with_system[: with_system.index(_S)]
        system_suffix = _between(with_system, _S, _U).removesuffix(user_prefix)
        default_system = only_user[: only_user.index(_U)].removesuffix(user_prefix)
    except (ValueError, IndexError) as exc:
        raise UnsupportedModelError(
            f"The chat template does not wrap messages in a way slmforge can translate ({exc}); "
            "give the Ollama template explicitly with `package.ollama_template`."
        ) from exc
    def strip_bos(text: str) -> str:
        return text.replace(_BOS, "")

    return TemplateParts(
        default_system=strip_bos(default_system),
        system=(strip_bos(system_prefix), system_suffix),
        user=(strip_bos(user_prefix), user_suffix),
        assistant=(assistant_prefix, assistant_suffix),
        generation_prompt=generation,
    )


def _after(text: str, marker: str) -> str:
    return text[text.index(marker) + len(marker):]


def _between(text: str, start: str, end: str) -> str:
    begin = text.index(start) + len(start)
    return text[begin: text.index(end, begin)]


def render_parts(parts: TemplateParts, messages: list[tuple[str, str]], *, generation: bool) -> str:
    """What the Go template produces for `messages` (mirrors `to_go_template`)."""
    out = "" if messages and messages[0][0] == "system" else parts.default_system
    for role, content in messages:
        prefix, suffix = getattr(parts, role)
        out += prefix + content + suffix
    if generation and (not messages or messages[-1][0] != "assistant"):
        out += parts.generation_prompt
    return out


def to_go_template(parts: TemplateParts) -> str:
    """The Ollama TEMPLATE text for `parts`, on one line: no `{{-` trimming, because the
    wrappers' own newlines are part of the prompt the model was trained on."""
    def role(name: str, first: bool) -> str:
        prefix, suffix = getattr(parts, name)
        keyword = "if" if first else "else if"
        return f'{{{{ {keyword} eq .Role "{name}" }}}}{_go(prefix)}{{{{ .Content }}}}{_go(suffix)}'

    return (
        f'{{{{ if not (and .Messages (eq (index .Messages 0).Role "system")) }}}}{_go(parts.default_system)}{{{{ end }}}}'
        "{{ range $i, $_ := .Messages }}"
        "{{ $last := eq (len (slice $.Messages $i)) 1 }}"
        + role("system", True) + role("user", False) + role("assistant", False)
        + "{{ end }}"
        f'{{{{ if and $last (ne .Role "assistant") }}}}{_go(parts.generation_prompt)}{{{{ end }}}}'
        "{{ end }}"
    )


def _go(text: str) -> str:
    """Literal text inside a Go template: only '{{' needs escaping."""
    return text.replace("{{", '{{ "{{" }}')


def stop_sequences(parts: TemplateParts, eos_token: str) -> list[str]:
    """Strings that end an assistant turn: the assistant suffix (trimmed) and the EOS token."""
    stops = [parts.assistant[1].strip(), eos_token]
    return [s for i, s in enumerate(stops) if s and s not in stops[:i]]
