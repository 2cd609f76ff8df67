"""Content-addressed artifact storage: identical bytes are stored once.

Files live at ``<root>/objects/ab/cd/<sha256><ext>`` on the local filesystem (the
embedded default) or under any fsspec URL (``s3://bucket/prefix``) when configured. Writes
are atomic (temp file + rename) so a crashed worker never leaves a half file under a
hash name. ``record_artifact`` upserts the matching ``artifacts`` row.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

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

    def __init__(self, root: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES):
        self.root = str(root)
        self.max_bytes = max_bytes
        self._remote = "://" in self.root and not self.root.startswith("file://")

    def _key(self, sha: str, ext: str) -> str:
        return f"objects/{sha[:2]}/{sha[2:4]}/{sha}{ext}"

    def uri_for(self, sha: str, ext: str = "") -> str:
        key = self._key(sha, ext)
        return f"{self.root.rstrip('/')}/{key}" if self._remote else str(Path(self.root) / key)

    def put_bytes(self, data: bytes, *, media_type: str | None = None, ext: str = "") -> StoredObject:
        """Store bytes once; return where they live."""
        if len(data) > self.max_bytes:
            raise BadInputError(f"artifact of {len(data)} bytes exceeds the limit of {self.max_bytes}")
        sha = hashlib.sha256(data).hexdigest()
        ext = ext or (mimetypes.guess_extension(media_type or "") or "")
        uri = self.uri_for(sha, ext)
        if self._remote:
            self._put_remote(uri, data)
        elif not os.path.exists(uri):
            _atomic_write(Path(uri), data)
        return StoredObject(sha, len(data), uri, media_type)

    def put_file(self, path: str | Path, *, media_type: str | None = None) -> StoredObject:
        path = Path(path)
        if path.stat().st_size > self.max_bytes:
            raise BadInputError(f"{path} is {path.stat().st_size} bytes, over the limit of {self.max_bytes}")
        suffix = "".join(path.suffixes[-2:]) if path.name.endswith((".tar.gz", ".tei.xml")) else path.suffix
        return self.put_bytes(path.read_bytes(), media_type=media_type or guess_media_type(path), ext=suffix)

    def read_bytes(self, uri: str) -> bytes:
        if "://" in uri and not uri.startswith("file://"):
            import fsspec

            with fsspec.open(uri, "rb") as fh:
                return fh.read()
        return Path(uri.removeprefix("file://")).read_bytes()

    def _put_remote(self, uri: str, data: bytes) -> None:
        import fsspec

        fs, path = fsspec.core.url_to_fs(uri)
        if not fs.exists(path):
            with fs.open(path, "wb") as fh:
                fh.write(data)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
