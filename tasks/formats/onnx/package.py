"""ONNX packaging: a deployable GenAI folder, checked by serving it (a greedy smoke answer)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from tasks.card import model_card
from tasks.evaluate.process import WORKER, run_worker
from tasks.formats.onnx.config import OnnxTargets
from tasks.formats.onnx.runtime import bos_text, chat_template
from tasks.store.artifacts import link_or_copy, stored_step
from tasks.store.codeid import code_identity

WORKER = "tasks.evaluate.worker"
RUNTIME = "tasks.formats.onnx.runtime"


class PackagedOnnxVariant(BaseModel):
    folder: Path
    key: str
    reused: bool
    smoke_prompt: str
    smoke_answer: str


def package_onnx_variant(
    folder: Path, *, hf_dir: Path, model_name: str, precision: str, variant_key: str, metrics: dict,
    provenance: dict, targets: OnnxTargets, store_root: Path, threads: int,
) -> PackagedOnnxVariant:
    """A deployable GenAI folder: model files, tokenizer, chat template, README.md card, manifest.

    Validated by serving it: a greedy answer to `targets.smoke_prompt`, generated from the
    assembled folder itself, is recorded in the card and returned.
    """
    material = {"variant_key": variant_key, "metrics": metrics, "provenance": provenance,
                "code": code_identity(__name__, RUNTIME, WORKER),
                "smoke": [targets.smoke_prompt, targets.smoke_max_new_tokens]}

    def build(tmp: Path) -> None:
        for item in sorted(folder.iterdir()):
            if item.is_file():
                link_or_copy(item, tmp / item.name)
        smoke = run_worker(
            {"mode": "smoke", "runtime": RUNTIME, "model": str(tmp), "prompt": targets.smoke_prompt,
             "max_new_tokens": targets.smoke_max_new_tokens, "threads": threads},
            timeout_s=targets.export_timeout_s,
        )
        (tmp / "smoke_test.json").write_text(json.dumps(smoke, indent=2))
        (tmp / "README.md").write_text(model_card(
            title=f"{model_name} {precision} (ONNX Runtime GenAI)",
            variant={"format": "onnx", "quant": precision, "runtime": "onnxruntime-genai",
                     "files": ", ".join(sorted(p.name for p in folder.iterdir() if p.is_file()))},
            provenance=provenance, metrics=metrics,
            usage=_usage(smoke, templated=chat_template(tmp) is not None, bos=bos_text(tmp)),
        ))

    stored = stored_step(store_root, "onnx-package", material, build)
    smoke = json.loads((stored.path / "smoke_test.json").read_text())
    return PackagedOnnxVariant(folder=stored.path, key=stored.key, reused=stored.reused,
                               smoke_prompt=smoke["prompt"], smoke_answer=smoke["answer"])


def _usage(smoke: dict, *, templated: bool, bos: str = "") -> str:
    answer = smoke["answer"].replace("\n", "\\n").replace("`", "'")
    # A folder without a chat template (a pretrained model): GenAI refuses to template, the prompt is the text.
    prompt = ("prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)\n" if templated
              else f"prompt = {json.dumps(bos + smoke['prompt'])}  # no chat template: BOS and the text\n")
    return (
        "With ONNX Runtime GenAI (`pip install onnxruntime-genai`), from this folder:\n\n"
        "```python\nimport json\nimport onnxruntime_genai as og\n\n"
        'model = og.Model(".")\ntokenizer = og.Tokenizer(model)\n'
        f'messages = json.dumps([{{"role": "user", "content": {json.dumps(smoke["prompt"])}}}])\n'
        + prompt +
        "params = og.GeneratorParams(model)\nparams.set_search_options(do_sample=False, max_length=256)\n"
        "generator = og.Generator(model, params)\ngenerator.append_tokens(tokenizer.encode(prompt))\n"
        "while not generator.is_done():\n    generator.generate_next_token()\n"
        "print(tokenizer.decode(generator.get_sequence(0)))\n```\n\n"
        "## Smoke test\n\nGenerated greedily from this packaged folder "
        f"{'with its chat template' if templated else 'from the bare prompt (no chat template)'} when it "
        f"was built ({smoke['answer_tokens']} tokens):\n\n- **prompt**: `{smoke['prompt']}`\n"
        f"- **answer**: `{answer}`\n"
    )
