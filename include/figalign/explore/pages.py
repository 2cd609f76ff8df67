"""Bytes the explorer serves: artifact files by hash, and a PDF page with the figure's box.

Files are found through the ``artifacts`` row of a hash the client named, never through a
path the client sent; the file's name must carry that hash and its bytes must hash to it,
so even a wrong ``storage_uri`` in the store cannot make the explorer serve another file.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

from figalign import location
from figalign.errors import BadInputError
from figalign.storage import ArtifactStore
from figalign.store.models import Artifact

log = logging.getLogger(__name__)
PAGE_DPI = 110


class ArtifactMissing(LookupError):
    """The artifact row exists but its bytes cannot be found or do not match the hash."""


def _candidates(art: Artifact, store: ArtifactStore) -> Iterator[str]:
    """Where the bytes may be: the recorded URI, then the same object under this data dir
    (a store copied to another machine, or to a bucket, keeps its layout but not its
    absolute paths). Lazy: the folder is only listed (a LIST request on S3) when the
    recorded URI did not serve."""
    yield art.storage_uri
    folder = store.uri_for(art.sha256).rsplit("/", 1)[0]
    # the sha is 64 hex chars (checked by the caller), so the glob is literal
    if location.is_url(folder):
        fs, path = location.filesystem(folder, store.storage_options)
        scheme = location.protocol(folder)
        found = [f"{scheme}://{p}" for p in fs.glob(f"{path}/{art.sha256}*")]
    else:
        local = Path(folder)
        found = [str(p) for p in local.glob(art.sha256 + "*")] if local.is_dir() else []
    yield from sorted(u for u in found if u != art.storage_uri)


def read_artifact(art: Artifact, store: ArtifactStore) -> bytes:
    """The verified bytes of an artifact, or ArtifactMissing."""
    for uri in _candidates(art, store):
        name = uri.rsplit("/", 1)[-1]
        if not name.startswith(art.sha256):
            log.warning("artifact %s has a storage_uri not named by its hash: %s", art.id, uri)
            continue
        try:
            data = store.read_bytes(uri)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            log.debug("artifact %s not at %s: %s", art.id, uri, exc)
            continue
        if hashlib.sha256(data).hexdigest() != art.sha256:
            log.error("artifact %s at %s does not match its sha256", art.id, uri)
            continue
        return data
    raise ArtifactMissing(f"bytes of artifact {art.sha256} not found")


def render_page_with_box(pdf_bytes: bytes, page_index: int, bbox: list[float], dpi: int = PAGE_DPI) -> bytes:
    """PNG of one PDF page (0-based) with the figure's box (PDF points, top-left) drawn in red."""
    import pymupdf  # heavy: imported only when a page is asked for

    if len(bbox) != 4:
        raise BadInputError(f"bbox must have 4 numbers, got {bbox!r}")
    with pymupdf.open(stream=pdf_bytes, filetype="pdf") as doc:
        if not 0 <= page_index < doc.page_count:
            raise BadInputError(f"page {page_index} not in a {doc.page_count}-page PDF")
        page = doc[page_index]
        rect = pymupdf.Rect(*bbox) & page.rect
        page.draw_rect(rect, color=(0.86, 0.1, 0.1), width=2.5, overlay=True)
        return page.get_pixmap(dpi=dpi).tobytes("png")


def page_etag(pdf_sha: str, page_index: int, bbox: list[float]) -> str:
    """A stable ETag for a rendered page: same PDF, page, box and DPI give the same PNG."""
    key = f"{pdf_sha}:{page_index}:{','.join(f'{v:.2f}' for v in bbox)}:{PAGE_DPI}"
    return hashlib.sha256(key.encode()).hexdigest()
