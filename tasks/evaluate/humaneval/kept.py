"""Generations kept one file per problem as they are decoded, so a HumanEval run of hours that is
stopped, killed or timed out resumes at the first problem it had not finished.

One folder per variant and decoding setting under the store's `humaneval-completions/`, keyed like a
stored step by everything a greedy completion depends on: the variant, max_tokens, n_ctx, threads, the
generation code, the runtime's version and the host (greedy decoding can differ between hosts' kernels).
The problems chosen are not in the key: each problem is decoded on its own, so the first five of a quick
run are the first five of the study and are not decoded again. The measurement's own key still holds the
subset: its figures are re-scored over exactly the problems asked for.

What is kept is the raw text the variant generated (and whether it was prompted through the chat
template), not the program made from it: extraction (tasks.evaluate.humaneval.extract) runs on every
scoring and is not in the key, so a fix there re-scores every kept generation without decoding it again.

Each problem's file is written under a temporary name and renamed, and holds the sha256 of its record:
a file that does not verify (altered, or from an older layout) is decoded again, never trusted.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import NamedTuple

from tasks.store.artifacts import step_key
from tasks.store.hashing import sha256_json

STEP = "humaneval-completions"
STALE_TMP_S = 3600  # a temporary file this old belongs to a worker that died between write and rename


class Generation(NamedTuple):
    """What a variant generated for one problem: the text after the prompt, and whether the prompt went
    through the chat template (extraction differs)."""

    text: str
    chat: bool


def kept_folder(store_root: Path, material: dict) -> Path:
    """The folder of one variant's kept completions (created)."""
    folder = store_root / STEP / step_key(STEP, material)[:24]
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "material.json"  # what the key hashes, for whoever reads the store
    if not manifest.is_file():
        _write_atomic(manifest, json.dumps(material, indent=2, sort_keys=True, default=str))
    return folder


class KeptCompletions:
    """Read and write one folder of kept completions (tasks.evaluate.humaneval.generate uses it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        for tmp in folder.glob(".tmp-*"):
            if time.time() - tmp.stat().st_mtime > STALE_TMP_S:
                tmp.unlink(missing_ok=True)

    def _path(self, task_id: str) -> Path:
        return self.folder / (task_id.replace("/", "_") + ".json")

    def get(self, task_id: str) -> Generation | None:
        """The kept generation of `task_id`, or None when there is none or its file does not verify."""
        try:
            kept = json.loads(self._path(task_id).read_text(encoding="utf-8"))
            record = kept["record"]
            if kept["sha256"] != sha256_json(record) or record["task_id"] != task_id:
                return None
            return Generation(text=str(record["generated"]), chat=bool(record["chat"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, task_id: str, generation: Generation) -> None:
        record = {"task_id": task_id, "generated": generation.text, "chat": generation.chat}
        _write_atomic(self._path(task_id), json.dumps({"record": record, "sha256": sha256_json(record)}))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
