"""The project's parses of Python source never overlap: CPython 3.11's ast.parse fails when two
threads parse at once ("AST constructor recursion depth mismatch"; a default run lost every
variant to it when Prefect's two build threads each computed a code identity)."""

import ast
import threading
import time

from tasks.evaluate.process import WORKER
from tasks.formats.onnx.support import architectures_in_builder
from tasks.store import codeid

BUILDER = "def create_model(config):\n    if config.architectures[0] == 'LlamaForCausalLM':\n        pass\n"


def test_code_identities_and_other_parses_in_threads_never_overlap(monkeypatch):
    state = {"active": 0, "most": 0}
    guard = threading.Lock()
    real_parse = ast.parse

    def slow_parse(*args, **kwargs):
        with guard:
            state["active"] += 1
            state["most"] = max(state["most"], state["active"])
        try:
            time.sleep(0.002)  # a thread switch inside a parse: what CPython 3.11 cannot take
            return real_parse(*args, **kwargs)
        finally:
            with guard:
                state["active"] -= 1

    monkeypatch.setattr(ast, "parse", slow_parse)
    codeid.code_identity.cache_clear()
    codeid.import_closure.cache_clear()
    try:
        closures = []
        work = [lambda: closures.append(codeid.import_closure(WORKER)),
                lambda: closures.append(codeid.import_closure("tasks.formats.gguf.runtime")),
                lambda: [architectures_in_builder(BUILDER) for _ in range(100)]]
        threads = [threading.Thread(target=job) for job in work]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        codeid.code_identity.cache_clear()
        codeid.import_closure.cache_clear()
    assert len(closures) == 2 and all(WORKER in c or "tasks.formats.gguf.runtime" in c for c in closures)
    assert state["most"] == 1, f"{state['most']} parses ran at once"
