"""The Modelfile's TEMPLATE rendered by Go's own text/template (Ollama's template language) says
exactly what the model's Jinja chat template says, on several conversations."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.formats.gguf.config import PackageConfig
from tests.helpers import require_tool
from tasks.formats.gguf.package import modelfile_text

GO_PROGRAM = Path(__file__).resolve().parents[1] / "go" / "ollama_template" / "main.go"
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Hot or cold?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Add 2 and 3."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Blue."}],
    [{"role": "user", "content": "Braces {{ and }} and a \"quote\"\nover two lines"}],
]


def render_go(template: str, conversations: list) -> list[str]:
    go = require_tool("go", "Debian's golang-go: `make test-tools` installs it as root")
    done = subprocess.run([go, "run", str(GO_PROGRAM)], input=json.dumps(
        {"template": template, "conversations": conversations}), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def template_of(modelfile: str) -> str:
    found = re.search(r'^TEMPLATE """(.*?)"""$', modelfile, re.S | re.M)
    assert found, modelfile
    return found.group(1)


def test_shipped_modelfile_template_renders_like_the_jinja_template(tiny_model_dir):
    from transformers import AutoTokenizer

    template = template_of(modelfile_text("model.gguf", tiny_model_dir, PackageConfig()))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    expected = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=c[-1]["role"] != "assistant")
                for c in CONVERSATIONS]
    assert render_go(template, CONVERSATIONS) == expected
    assert "<|im_start|>assistant\n" in expected[0]  # the generation prompt is part of what was compared


def test_a_wrong_template_is_caught(tiny_model_dir):
    from transformers import AutoTokenizer

    template = template_of(modelfile_text("model.gguf", tiny_model_dir, PackageConfig()))
    broken = template.replace("<|im_end|>", "</s>", 1)  # one wrong end marker
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    expected = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=c[-1]["role"] != "assistant")
                for c in CONVERSATIONS]
    assert render_go(broken, CONVERSATIONS) != expected
