"""Error classes that every client and parser raises.

The split matters because the stage runner decides from the class alone whether an item
is retried (``TransientError``) or recorded as failed and left alone (``PermanentError``).
"""

from __future__ import annotations


class FigalignError(Exception):
    """Base class of all figalign errors."""


class TransientError(FigalignError):
    """A failure that may go away on retry (timeouts, 429, 5xx, connection resets).

    ``retry_after`` carries a server's ``Retry-After`` hint in seconds, when it gave one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(FigalignError):
    """A failure that will not change on retry (404, 403, malformed response)."""


class BadInputError(PermanentError):
    """The input itself is unusable: corrupt, encrypted, malicious or of the wrong kind."""


class ConfigError(FigalignError):
    """Configuration is missing or invalid; the whole batch cannot run."""


def error_class(exc: BaseException) -> str:
    """Short, stable name of an exception's class, stored with failed stage runs."""
    return type(exc).__name__
