"""The one ``Retry-After`` parser every client uses (HTTP, GROBID, the vLLM endpoint)."""

from __future__ import annotations

import email.utils
import re
import time

_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date.

    A date in the past gives 0.0; a missing or unreadable value gives None.
    """
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means no zone was given
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
