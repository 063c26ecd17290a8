"""The licence recorded for a model is a licence, never the name of the file that holds it."""

import json

import pytest

from tasks.acquire.inspect import find_license

APACHE = """
                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/

   TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION
"""
MIT = """MIT License

Copyright (c) 2024 Someone

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
"""
BSD3 = """Copyright (c) 2024, Someone
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice.
2. Redistributions in binary form must reproduce the above copyright notice.
3. Neither the name of the copyright holder nor the names of its
   contributors may be used to endorse or promote products derived from
"""
GPL3 = """                    GNU GENERAL PUBLIC LICENSE
                       Version 3, 29 June 2007

 Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>
"""
LLAMA31 = """LLAMA 3.1 COMMUNITY LICENSE AGREEMENT
Llama 3.1 Version Release Date: July 23, 2024
"""
GEMMA = """Gemma Terms of Use

Last modified: February 21, 2024
"""


def _folder(tmp_path, files: dict[str, str]):
    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("LICENSE", APACHE, "Apache-2.0"),
    ("LICENSE", MIT, "MIT"),
    ("LICENSE.txt", BSD3, "BSD-3-Clause"),
    ("COPYING", GPL3, "GPL-3.0"),
    ("LICENSE", LLAMA31, "Llama 3.1 Community License"),
    ("LICENSE", GEMMA, "Gemma Terms of Use"),
])
def test_a_licence_file_is_identified_by_its_text(tmp_path, name, text, expected):
    assert find_license(_folder(tmp_path, {name: text})) == expected


def test_an_unknown_licence_text_points_at_its_file(tmp_path):
    folder = _folder(tmp_path, {"LICENSE": "You may use this model on Tuesdays only."})
    assert find_license(folder) == "custom (see LICENSE)"


def test_the_card_front_matter_comes_first(tmp_path):
    card = "---\nlanguage: [en]\nlicense: apache-2.0\ntags: [text-generation]\n---\n# Model\n"
    assert find_license(_folder(tmp_path, {"README.md": card, "LICENSE": MIT})) == "apache-2.0"


def test_a_card_saying_other_uses_its_licence_name_or_the_file(tmp_path):
    named = "---\nlicense: other\nlicense_name: qwen-research\n---\n"
    assert find_license(_folder(tmp_path / "a", {"README.md": named})) == "qwen-research"
    unnamed = "---\nlicense: other\n---\n"
    assert find_license(_folder(tmp_path / "b", {"README.md": unnamed, "LICENSE": LLAMA31})) == (
        "Llama 3.1 Community License"
    )
    assert find_license(_folder(tmp_path / "c", {"README.md": unnamed})) == "other (see the model card)"


def test_license_outside_the_front_matter_is_not_metadata(tmp_path):
    card = "# Model\n\nlicense: see below, it is complicated\n"
    assert find_license(_folder(tmp_path, {"README.md": card, "LICENSE": APACHE})) == "Apache-2.0"


def test_config_json_licence_is_used_when_the_card_has_none(tmp_path):
    folder = _folder(tmp_path, {"LICENSE": MIT})
    (folder / "config.json").write_text(json.dumps({"architectures": ["X"], "license": "mit"}))
    assert find_license(folder) == "mit"


def test_no_licence_anywhere_is_none(tmp_path):
    assert find_license(_folder(tmp_path, {"README.md": "# Model\n"})) is None
