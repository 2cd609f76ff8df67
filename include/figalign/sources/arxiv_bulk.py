"""arXiv's bulk source data: the manifest of source tars and the e-prints inside them.

arXiv publishes every paper's source in its requester-pays bucket (``s3://arxiv``) as
``src/arXiv_src_YYMM_NNN.tar`` files of about 500 MB, listed in
``src/arXiv_src_manifest.xml``::

    <arXivSRC>
      <file>
        <content_md5sum>…</content_md5sum>
        <filename>src/arXiv_src_0001_001.tar</filename>
        <first_item>astro-ph0001001</first_item>
        <last_item>quant-ph0001119</last_item>
        <md5sum>…</md5sum>            (of the tar itself: checked after download)
        <num_items>2364</num_items>
        <seq_num>1</seq_num>
        <size>225605507</size>
        <timestamp>2010-12-23 00:13:59</timestamp>
        <yymm>0001</yymm>
      </file>
      …
      <timestamp>…</timestamp>
    </arXivSRC>

Each tar member is one paper's latest e-print: ``YYMM/<id>.gz`` (a gzipped tar of the
sources, or a single gzipped .tex) or ``YYMM/<id>.pdf`` for PDF-only submissions. Old-style
ids drop their slash: ``0001/astro-ph0001001.gz`` is ``astro-ph/0001001``.

The tar is read as a stream (``tarfile`` ``r|``) while its md5 is computed on the way, so
no tar is ever held whole in memory or on disk; one member at a time is (up to the member
cap). Members are hostile input: unsafe names, links, devices, oversized members, names
that are no arXiv id, and content that is not what its name says are refused with a
reason, never extracted and never fatal for the tar.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from figalign.errors import BadInputError, TransientError
from figalign.parsers.latex_archive import _member_problem  # the e-print unpacker's member rules
from figalign.parsers.xmlsafe import local_name, parse_xml_bytes

MANIFEST_KEY = "src/arXiv_src_manifest.xml"
_NEW_ID = re.compile(r"^(\d{4}\.\d{4,5})(v\d+)?$")
_OLD_ID = re.compile(r"^([a-z][a-z-]*(?:\.[A-Za-z-]+)?)(\d{7})(v\d+)?$")
_YYMM = re.compile(r"^\d{4}$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class TarEntry:
    """One source tar as the manifest lists it."""

    filename: str
    md5sum: str
    size: int
    yymm: str
    seq_num: int
    num_items: int
    first_item: str = ""
    last_item: str = ""
    timestamp: dt.datetime | None = None
    content_md5sum: str = ""


def yymm_key(yymm: str) -> int:
    """A sortable month for arXiv's two-digit years: arXiv began in 1991 (``9108``)."""
    if not _YYMM.match(yymm or ""):
        raise ValueError(f"not a YYMM month: {yymm!r}")
    yy, mm = int(yymm[:2]), int(yymm[2:])
    if not 1 <= mm <= 12:
        raise ValueError(f"not a YYMM month: {yymm!r}")
    return (1900 + yy if yy >= 91 else 2000 + yy) * 100 + mm


def _timestamp(text: str) -> dt.datetime | None:
    text = (text or "").strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def parse_manifest(data: bytes) -> list[TarEntry]:
    """The manifest's ``<file>`` entries, in manifest order; entries missing a name or md5
    are a broken manifest (``BadInputError``), not silently dropped tars."""
    root = parse_xml_bytes(data, source=MANIFEST_KEY)
    if local_name(root) != "arXivSRC":
        raise BadInputError(f"{MANIFEST_KEY}: root element is <{local_name(root)}>, not <arXivSRC>")
    out = []
    for el in root:
        if local_name(el) != "file":
            continue
        f = {local_name(c): (c.text or "").strip() for c in el}
        if not f.get("filename") or not f.get("md5sum") or not f.get("yymm"):
            raise BadInputError(f"{MANIFEST_KEY}: a <file> lacks filename, md5sum or yymm: {f}")
        try:
            out.append(TarEntry(f["filename"], f["md5sum"].lower(), int(f.get("size") or 0), f["yymm"],
                                int(f.get("seq_num") or 0), int(f.get("num_items") or 0), f.get("first_item", ""),
                                f.get("last_item", ""), _timestamp(f.get("timestamp", "")),
                                f.get("content_md5sum", "")))
        except ValueError as exc:
            raise BadInputError(f"{MANIFEST_KEY}: bad number in {f['filename']}: {exc}") from exc
    return out


def select_months(entries: list[TarEntry], from_yymm: str, until_yymm: str) -> list[TarEntry]:
    """The tars of months ``from_yymm`` … ``until_yymm`` (inclusive), oldest first."""
    lo, hi = yymm_key(from_yymm), yymm_key(until_yymm)
    if hi < lo:
        raise ValueError(f"--until-yymm {until_yymm} is before --from-yymm {from_yymm}")
    chosen = [e for e in entries if lo <= yymm_key(e.yymm) <= hi]
    return sorted(chosen, key=lambda e: (yymm_key(e.yymm), e.seq_num, e.filename))


def member_paper(name: str) -> tuple[str, str] | None:
    """(arXiv id, role) of a tar member name, or None when it names no e-print or PDF.

    >>> member_paper("2301/2301.00001.gz")
    ('2301.00001', 'eprint')
    >>> member_paper("0001/astro-ph0001001.pdf")
    ('astro-ph/0001001', 'pdf')
    """
    base = PurePosixPath(name).name
    for suffix, role in ((".gz", "eprint"), (".pdf", "pdf")):
        if base.endswith(suffix):
            stem = base[: -len(suffix)]
            if match := _NEW_ID.match(stem):
                return match.group(1), role
            if match := _OLD_ID.match(stem):
                return f"{match.group(1)}/{match.group(2)}", role
    return None


@dataclass(frozen=True)
class Member:
    """One accepted member: its paper, role, name in the tar and bytes."""

    arxiv_id: str
    role: str
    name: str
    data: bytes


@dataclass(frozen=True)
class Refused:
    """A member that was not taken, and why."""

    name: str
    reason: str


class _HashingReader:
    """A read-only stream that hashes (md5) and counts every byte read through it."""

    def __init__(self, raw):
        self.raw = raw
        self.md5 = hashlib.md5()  # noqa: S324 - arXiv's manifest checksum, not security
        self.bytes = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.md5.update(data)
        self.bytes += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def _content_problem(role: str, data: bytes) -> str | None:
    if role == "eprint" and not data.startswith(b"\x1f\x8b"):
        return "not gzip data (an e-print .gz member must be gzipped)"
    if role == "pdf" and not data.lstrip()[:5] == b"%PDF-":
        return "not a PDF (no %PDF- header)"
    return None


def read_members(raw, *, max_member_bytes: int, expected_md5: str | None = None,
                 on_member: Callable[[Member], None], on_refused: Callable[[Refused], None]) -> int:
    """Stream a source tar from ``raw``: call ``on_member`` for each usable member and
    ``on_refused`` for each refused one; return the tar's byte count.

    The md5 of all bytes read is compared with ``expected_md5`` at the end; a mismatch (a
    truncated or corrupted download) raises ``TransientError``, so the caller retries the
    tar and writes none of what it saw. A tar that cannot be read at all is transient too
    (most often a dropped connection); a mismatch that persists ends the item failed.
    """
    reader = _HashingReader(raw)
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in _members(tar, max_member_bytes, on_refused):
                on_member(member)
        reader.drain()
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        reader.drain()  # the whole download's md5 says whether the tar or the download is broken
        if expected_md5 and reader.md5.hexdigest() != expected_md5.lower():
            raise TransientError(f"tar unreadable ({type(exc).__name__}: {exc}) and md5 mismatch after "
                                 f"{reader.bytes} bytes: a damaged download") from exc
        raise BadInputError(f"tar unreadable: {type(exc).__name__}: {exc}") from exc
    got = reader.md5.hexdigest()
    if expected_md5 and got != expected_md5.lower():
        raise TransientError(f"md5 mismatch: manifest says {expected_md5}, downloaded {reader.bytes} bytes "
                             f"hash to {got}")
    return reader.bytes


def _members(tar: tarfile.TarFile, max_member_bytes: int, on_refused) -> Iterator[Member]:
    for info in tar:
        if info.isdir():
            continue
        problem = _member_problem(info, "/bulk-tar")
        if problem is None and not info.isfile():
            problem = "not a regular file"
        paper = member_paper(info.name) if problem is None else None
        if problem is None and paper is None:
            problem = "name is no arXiv e-print (<id>.gz) or PDF (<id>.pdf)"
        if problem is None and info.size > max_member_bytes:
            problem = f"member of {info.size} bytes is over the cap of {max_member_bytes}"
        if problem is not None:
            on_refused(Refused(info.name, problem))
            continue
        src = tar.extractfile(info)
        # a tar member yields exactly its header's size (checked against the cap above); asking
        # for no more keeps io.BufferedReader from reserving a cap-sized buffer per member
        data = src.read(info.size) if src is not None else b""
        if problem := _content_problem(paper[1], data):
            on_refused(Refused(info.name, problem))
            continue
        yield Member(paper[0], paper[1], info.name, data)
