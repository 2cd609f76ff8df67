"""Where things live: the data dir as a local folder or an fsspec URL, never both confused.

``FIGALIGN_DATA_DIR`` may be ``data`` (a folder) or ``s3://bucket/prefix`` (any fsspec URL).
A URL must never pass through ``pathlib.Path``: ``Path("s3://b/p")`` is the *local* folder
``s3:/b/p``, which is how an S3 data dir once silently filled a folder named ``s3:``. Code
that builds locations below the data dir goes through ``join``; code that writes objects
goes through ``write_bytes``/``publish_tree``, which never leave a half object under its
final name (local: temp file + rename; object stores: one PUT, or a multipart upload that
only appears when it completes).

``storage_options`` (from ``config.StorageOptions``) are given only to the data dir's own
protocol: a local path never receives S3 credentials.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def is_url(location: str | os.PathLike) -> bool:
    """True for ``scheme://…`` (other than ``file://``): a location that is not a local path."""
    text = os.fspath(location)
    return "://" in text and not text.startswith("file://")


def protocol(location: str) -> str:
    return location.split("://", 1)[0] if is_url(location) else "file"


def join(root: str | os.PathLike, *parts: str) -> str:
    """``root/part/...`` as text: '/'-joined for a URL, ``os.path.join`` for a local folder."""
    root = os.fspath(root)
    if is_url(root):
        return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(root.removeprefix("file://"), *parts)


def local_path(location: str | os.PathLike) -> Path:
    """The local ``Path`` of a non-URL location; a URL here is a programming error."""
    text = os.fspath(location)
    if is_url(text):
        raise ValueError(f"{text} is a URL, not a local path")
    return Path(text.removeprefix("file://"))


def filesystem(location: str, storage_options: Mapping[str, Any] | None = None):
    """``(fs, path)`` for a URL through fsspec's public ``url_to_fs``."""
    import fsspec

    return fsspec.core.url_to_fs(location, **dict(storage_options or {}))


def write_bytes(location: str, data: bytes, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write a whole object at once; a reader sees all of it or nothing under that name."""
    if is_url(location):
        fs, path = filesystem(location, storage_options)
        fs.pipe_file(path, data)  # one PUT (multipart for big data, visible only when complete)
        return
    path = local_path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_bytes(location: str, storage_options: Mapping[str, Any] | None = None) -> bytes:
    if is_url(location):
        fs, path = filesystem(location, storage_options)
        return fs.cat_file(path)
    return local_path(location).read_bytes()


def exists(location: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    if is_url(location):
        fs, path = filesystem(location, storage_options)
        return fs.exists(path)
    return local_path(location).exists()


def publish_tree(local_dir: Path, location: str, storage_options: Mapping[str, Any] | None = None, *,
                 last: tuple[str, ...] = ()) -> list[str]:
    """Upload every file under ``local_dir`` to ``location`` keeping relative paths; the
    names in ``last`` go after all others (the manifest: its presence says the rest is
    there). Returns the uploaded relative paths in upload order."""
    files = sorted(p.relative_to(local_dir).as_posix() for p in local_dir.rglob("*") if p.is_file())
    ordered = [f for f in files if f not in last] + [f for f in last if f in files]
    fs, root = filesystem(location, storage_options)
    for rel in ordered:
        fs.makedirs(posixpath.dirname(f"{root.rstrip('/')}/{rel}"), exist_ok=True)
        fs.put_file(str(local_dir / rel), f"{root.rstrip('/')}/{rel}")
    return ordered
