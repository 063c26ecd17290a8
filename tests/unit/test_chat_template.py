import pytest

from tasks.core.errors import UnsupportedModelError
from tasks.formats.gguf.chat_template import (
    template_renderer, extract_parts, render_parts, stop_sequences, to_go_template,
)

CHATML_WITH_DEFAULT_SYSTEM = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CONVERSATIONS = [
    [("user", "What is the capital of France?")],
    [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "2+2?")],
    [("user", "a"), ("assistant", "b")],
]


@pytest.mark.parametrize("template", [CHATML_WITH_DEFAULT_SYSTEM, LLAMA3])
@pytest.mark.parametrize("generation", [True, False])
def test_translated_parts_reproduce_the_jinja_template(template, generation):
    parts = extract_parts(template, eos_token="<|im_end|>")
    render = template_renderer(template, {"bos_token": "", "eos_token": "<|im_end|>"})
    for conversation in CONVERSATIONS:
        if generation and conversation[-1][0] == "assistant":
            continue  # Ollama continues a trailing assistant message instead of opening a new one
        assert render_parts(parts, conversation, generation=generation) == render(conversation, generation)


def test_go_template_keeps_newlines_and_default_system():
    go = to_go_template(extract_parts(CHATML_WITH_DEFAULT_SYSTEM))
    assert "{{-" not in go  # trimming would eat the newline after <|im_end|>
    assert "You are a helpful AI assistant named SmolLM" in go
    assert '{{ if eq .Role "user" }}' not in go and '{{ else if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n' in go


def test_stop_sequences_include_turn_end_and_eos():
    parts = extract_parts(LLAMA3)
    assert stop_sequences(parts, "<|end_of_text|>") == ["<|eot_id|>", "<|end_of_text|>"]


def test_template_that_refuses_probe_roles_is_reported():
    strict = "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(UnsupportedModelError, match="ollama_template"):
        extract_parts(strict)
