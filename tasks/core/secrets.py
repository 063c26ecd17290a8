"""Keep tokens out of every message, log line and tracked value."""

from __future__ import annotations

import os
import re

# Hugging Face tokens look like hf_ followed by 30+ letters; redact them even if unknown to us.
_HF_TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{20,}")
SECRET_ENV_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def redact(text: str, *secrets: str | None) -> str:
    """`text` with every given secret, known token variable value and hf_ token masked."""
    known = [s for s in secrets if s] + [os.environ[n] for n in SECRET_ENV_NAMES if os.environ.get(n)]
    for secret in sorted(set(known), key=len, reverse=True):
        text = text.replace(secret, "***")
    return _HF_TOKEN_PATTERN.sub("hf_***", text)
