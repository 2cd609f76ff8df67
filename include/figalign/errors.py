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


class UnfinishedWork(FigalignError):
    """A task would end while items it (or its DAG run) claimed are still ``running``.

    Raised instead of ending "success": the task fails visibly and Airflow retries it, and
    the retry takes those items over at once (``store.queue.claim_batch``).
    """

    def __init__(self, what: str, items: list[str]):
        shown = ", ".join(items[:20]) + (f" … and {len(items) - 20} more" if len(items) > 20 else "")
        super().__init__(f"{what}: {len(items)} claimed item(s) still running: {shown}")
        self.items = items
