"""The one safe-file-name helper the parsers use for images and work directories."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, fallback: str = "figure") -> str:
    """``name`` with every run of characters outside ``[A-Za-z0-9._-]`` made ``_``.

    Leading/trailing dots and underscores are stripped, so the result can never be ``..``
    or a hidden file; an empty result becomes ``fallback``.
    """
    return _UNSAFE.sub("_", name).strip("._") or fallback
