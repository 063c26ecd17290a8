"""Device profiles: every shipped one validates; bad ones say what is wrong."""

from __future__ import annotations

import pytest

from tasks.core.errors import ConfigError, UserError
from tasks.review.devices import DeviceProfile, load_device, shipped_devices


def test_every_shipped_profile_validates():
    names = shipped_devices()
    assert len(names) >= 2
    for name in names:
        profile = load_device(name)
        assert profile.name == name and profile.usable_bytes < profile.memory_budget


def test_every_field_is_described():
    assert all(field.description for field in DeviceProfile.model_fields.values())


def test_unknown_key_and_bad_values_all_reported(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("memory_budget: 1GiB\ncontext_lenght: 512\nkv_cache_type: q3_k\nthreads: 0\n")
    with pytest.raises(ConfigError) as info:
        load_device(str(path))
    text = str(info.value)
    assert "did you mean 'context_length'" in text and "kv_cache_type" in text and "threads" in text


def test_unknown_name_suggests_a_shipped_one():
    with pytest.raises(UserError, match="did you mean 'sbc-4gb'"):
        load_device("sbc-4g")
