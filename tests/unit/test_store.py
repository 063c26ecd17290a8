import json

import pytest

from tasks.store.artifacts import MANIFEST_NAME, link_or_copy, stored_step


def _writer(calls):
    def build(tmp):
        calls.append(tmp)
        (tmp / "out.bin").write_bytes(b"payload")
    return build


def test_second_call_reuses_and_verifies(tmp_path):
    calls = []
    first = stored_step(tmp_path, "step", {"a": 1}, _writer(calls))
    second = stored_step(tmp_path, "step", {"a": 1}, _writer(calls))
    assert (first.reused, second.reused, len(calls)) == (False, True, 1)
    assert second.path == first.path
    assert json.loads((first.path / MANIFEST_NAME).read_text())["files"]["out.bin"]


def test_changed_material_builds_a_new_artifact(tmp_path):
    calls = []
    a = stored_step(tmp_path, "step", {"a": 1}, _writer(calls))
    b = stored_step(tmp_path, "step", {"a": 2}, _writer(calls))
    assert a.path != b.path and len(calls) == 2


def test_altered_file_is_rebuilt_not_trusted(tmp_path):
    calls = []
    first = stored_step(tmp_path, "step", {"a": 1}, _writer(calls))
    (first.path / "out.bin").write_bytes(b"payloaX")  # same size, different content
    again = stored_step(tmp_path, "step", {"a": 1}, _writer(calls))
    assert not again.reused and len(calls) == 2
    assert (again.path / "out.bin").read_bytes() == b"payload"


def test_killed_build_leaves_nothing_under_the_final_name(tmp_path):
    def crash(tmp):
        (tmp / "half.bin").write_bytes(b"half")
        raise KeyboardInterrupt  # as a kill mid-step would interrupt the build

    with pytest.raises(KeyboardInterrupt):
        stored_step(tmp_path, "step", {"a": 1}, crash)
    # Only the per-key lock file may stay beside the final name: no final folder, no temporary.
    assert not [p for p in (tmp_path / "step").iterdir() if not p.name.startswith(".lock-")]
    calls = []
    resumed = stored_step(tmp_path, "step", {"a": 1}, _writer(calls))
    assert not resumed.reused and len(calls) == 1


def test_final_folder_without_manifest_is_rebuilt(tmp_path):
    calls = []
    first = stored_step(tmp_path, "step", {"a": 1}, _writer(calls))
    (first.path / MANIFEST_NAME).unlink()  # e.g. a copy interrupted by hand
    again = stored_step(tmp_path, "step", {"a": 1}, _writer(calls))
    assert not again.reused and len(calls) == 2


def test_only_old_temporaries_are_cleaned(tmp_path):
    import os
    import time

    from tasks.store.artifacts import clean_stale_temporaries

    old, young = tmp_path / "step" / ".tmp-old", tmp_path / "step" / ".tmp-young"
    old.mkdir(parents=True)
    young.mkdir()
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    assert clean_stale_temporaries(tmp_path) == 1
    assert not old.exists() and young.exists()


def test_link_or_copy_links_on_the_same_filesystem(tmp_path):
    source = tmp_path / "big.gguf"
    source.write_bytes(b"weights")
    link_or_copy(source, tmp_path / "linked.gguf")
    assert (tmp_path / "linked.gguf").read_bytes() == b"weights"
    assert (tmp_path / "linked.gguf").stat().st_ino == source.stat().st_ino  # not duplicated


def test_link_or_copy_copies_where_a_link_is_refused(tmp_path, monkeypatch):
    import os

    def refuse(*args):
        raise OSError(18, "Invalid cross-device link")

    source = tmp_path / "big.gguf"
    source.write_bytes(b"weights")
    monkeypatch.setattr(os, "link", refuse)
    link_or_copy(source, tmp_path / "copied.gguf")
    assert (tmp_path / "copied.gguf").read_bytes() == b"weights"
    assert (tmp_path / "copied.gguf").stat().st_ino != source.stat().st_ino
