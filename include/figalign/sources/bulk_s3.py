"""Where a bulk source lives and how to read it: an fsspec URL, requester pays on S3.

arXiv's source tars and bioRxiv/medRxiv's MECA packages sit in *requester-pays* S3
buckets: every GET is billed to the caller's AWS account, and S3 refuses a request that
does not say it accepts the charge. ``s3fs`` sends ``RequestPayer=requester`` when opened
with ``requester_pays=True``; the credentials come from the standard AWS chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_ENDPOINT_URL``/``AWS_DEFAULT_REGION``,
a profile, an instance role), or from an Airflow connection passed in as storage options.

Any other fsspec URL (``file://``, a local folder, ``gs://``) works the same way, without
the requester-pays option, so a mirror of the bucket can stand in for it.

Errors are classified here, at the client boundary: a missing object is permanent, an
access or throttling problem or a dropped connection is transient.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from figalign.errors import ConfigError, PermanentError, TransientError

DEFAULTS = {"arxiv": "s3://arxiv", "biorxiv": "s3://biorxiv-src-monthly", "medrxiv": "s3://medrxiv-src-monthly"}
URL_VARS = {"arxiv": "FIGALIGN_ARXIV_BULK_URL", "biorxiv": "FIGALIGN_BIORXIV_BULK_URL",
            "medrxiv": "FIGALIGN_MEDRXIV_BULK_URL"}
MAX_MEMBER_VAR = "FIGALIGN_BULK_MAX_MEMBER_MB"
DEFAULT_MAX_MEMBER_MB = 512


@dataclass(frozen=True)
class BulkLocation:
    """The root URL of one bulk source and the fsspec options to read it with."""

    source: str
    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    max_member_bytes: int = DEFAULT_MAX_MEMBER_MB * 1024 * 1024

    @classmethod
    def from_env(cls, source: str, env: Mapping[str, str] | None = None,
                 extra_options: Mapping[str, Any] | None = None) -> "BulkLocation":
        """``FIGALIGN_<SOURCE>_BULK_URL`` (default: the provider's bucket); requester pays on
        ``s3://``; ``extra_options`` (e.g. key and secret from an Airflow connection) on top."""
        env = os.environ if env is None else env
        if source not in DEFAULTS:
            raise ConfigError(f"no bulk source named {source!r} (known: {', '.join(DEFAULTS)})")
        url = (env.get(URL_VARS[source]) or DEFAULTS[source]).strip().rstrip("/")
        options: dict[str, Any] = {"requester_pays": True} if url.startswith("s3://") else {}
        options.update(extra_options or {})
        try:
            max_mb = int(env.get(MAX_MEMBER_VAR) or DEFAULT_MAX_MEMBER_MB)
        except ValueError as exc:
            raise ConfigError(f"{MAX_MEMBER_VAR} must be a whole number of MB: {exc}") from exc
        if max_mb <= 0:
            raise ConfigError(f"{MAX_MEMBER_VAR} must be positive")
        return cls(source, url, options, max_mb * 1024 * 1024)

    def filesystem(self):
        """(fsspec filesystem, root path inside it)."""
        import fsspec

        return fsspec.core.url_to_fs(self.url, **self.storage_options)

    def uri(self, key: str) -> str:
        return f"{self.url}/{key.lstrip('/')}"

    def read_bytes(self, key: str) -> bytes:
        fs, root = self.filesystem()
        with classified(key):
            return fs.cat_file(f"{root}/{key}")

    def open(self, key: str, **kwargs):
        """A binary, seekable file object for ``key`` (read in blocks, not all at once)."""
        fs, root = self.filesystem()
        with classified(key):
            return fs.open(f"{root}/{key}", "rb", **kwargs)

    def find(self, prefix: str, suffix: str) -> list[str]:
        """Keys under ``prefix`` (relative to the root, recursively) ending with ``suffix``, sorted."""
        fs, root = self.filesystem()
        base = f"{root}/{prefix.strip('/')}"
        with classified(prefix):
            if not fs.exists(base):
                return []
            paths = fs.find(base)
        head = root.rstrip("/") + "/"
        return sorted(p[len(head):] if p.startswith(head) else p for p in paths if p.endswith(suffix))


class classified:
    """Turn storage errors into figalign's transient/permanent errors (a context manager)."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, (TransientError, PermanentError)):
            return False
        if isinstance(exc, FileNotFoundError):
            raise PermanentError(f"{self.what}: not found in the bulk source") from exc
        if isinstance(exc, (PermissionError, OSError, TimeoutError, ConnectionError)):
            raise TransientError(f"{self.what}: {type(exc).__name__}: {exc}") from exc
        return False
