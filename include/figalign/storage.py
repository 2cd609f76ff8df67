"""Content-addressed artifact storage: identical bytes are stored once.

Files live at ``<root>/objects/ab/cd/<sha256><ext>`` on the local filesystem (the
embedded default) or under any fsspec URL (``s3://bucket/prefix``) when configured. Writes
never leave a half object under a hash name: locally temp file + rename, on an object
store one PUT (``figalign.location``). ``record_artifact`` upserts the matching
``artifacts`` row. ``ArtifactStore.from_settings`` is how stages get the store: it carries
the data dir's fsspec ``storage_options`` (the ``figalign_storage`` connection).
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from figalign import location
from figalign.errors import BadInputError
from figalign.store.models import Artifact, utcnow
from figalign.store.upsert import upsert

DEFAULT_MAX_BYTES = 2_000_000_000


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    size: int
    uri: str
    media_type: str | None


class ArtifactStore:
    """Put and get immutable blobs by sha256 under a root folder or fsspec URL."""

    def __init__(self, root: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 storage_options: Mapping[str, Any] | None = None):
        self.root = os.fspath(root)
        self.max_bytes = max_bytes
        self._remote = location.is_url(self.root)
        self._protocol = location.protocol(self.root)
        self.storage_options = dict(storage_options or {}) if self._remote else {}

    @classmethod
    def from_settings(cls, settings, **kwargs) -> "ArtifactStore":
        """The data dir's store, with its storage options."""
        return cls(settings.data_dir, storage_options=settings.storage_options, **kwargs)

    def _key(self, sha: str, ext: str) -> str:
        return f"objects/{sha[:2]}/{sha[2:4]}/{sha}{ext}"

    def uri_for(self, sha: str, ext: str = "") -> str:
        return location.join(self.root, self._key(sha, ext))

    def options_for(self, uri: str) -> dict[str, Any]:
        """Storage options for ``uri``: the store's own when it is on the store's protocol."""
        return self.storage_options if location.protocol(uri) == self._protocol else {}

    def put_bytes(self, data: bytes, *, media_type: str | None = None, ext: str = "") -> StoredObject:
        """Store bytes once; return where they live."""
        if len(data) > self.max_bytes:
            raise BadInputError(f"artifact of {len(data)} bytes exceeds the limit of {self.max_bytes}")
        sha = hashlib.sha256(data).hexdigest()
        ext = ext or (mimetypes.guess_extension(media_type or "") or "")
        uri = self.uri_for(sha, ext)
        if not location.exists(uri, self.storage_options):
            location.write_bytes(uri, data, self.storage_options)
        return StoredObject(sha, len(data), uri, media_type)

    def put_file(self, path: str | Path, *, media_type: str | None = None) -> StoredObject:
        path = Path(path)
        if path.stat().st_size > self.max_bytes:
            raise BadInputError(f"{path} is {path.stat().st_size} bytes, over the limit of {self.max_bytes}")
        suffix = "".join(path.suffixes[-2:]) if path.name.endswith((".tar.gz", ".tei.xml")) else path.suffix
        return self.put_bytes(path.read_bytes(), media_type=media_type or guess_media_type(path), ext=suffix)

    def read_bytes(self, uri: str) -> bytes:
        return location.read_bytes(uri, self.options_for(uri))


def guess_media_type(path: str | Path) -> str | None:
    name = str(path).lower()
    if name.endswith((".nxml", ".xml")):
        return "application/xml"
    if name.endswith((".tar.gz", ".tgz")):
        return "application/gzip"
    return mimetypes.guess_type(name)[0]


def record_artifact(session: Session, obj: StoredObject, *, origin_url: str | None = None) -> int:
    """Upsert the artifacts row for a stored object; return its id."""
    return upsert(
        session,
        Artifact,
        dict(sha256=obj.sha256, size=obj.size, media_type=obj.media_type, storage_uri=obj.uri,
             origin_url=origin_url, fetched_at=utcnow()),
        key=("sha256",),
        update=("storage_uri",),
    )
