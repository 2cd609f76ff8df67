"""What a source says about one paper, before it becomes a ``papers`` row."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FileRef:
    """One file to fetch: its role for the paper, a name, where it lives and its checksum."""

    role: str  # eprint | pdf | jats | media
    name: str
    url: str
    md5: str | None = None


@dataclass(frozen=True)
class PaperRecord:
    """One paper version as listed by a source; ``files`` are fetched by the fetch stage."""

    source: str
    external_id: str
    version: str = ""
    title: str | None = None
    abstract: str | None = None
    authors: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    discipline: str | None = None
    licence: str | None = None
    licence_url: str | None = None
    doi: str | None = None
    published_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    retracted: bool = False
    files: tuple[FileRef, ...] = ()
    excluded_reason: str | None = None  # set by the source when it cannot be used at all
    extra: dict[str, Any] = field(default_factory=dict)

    def source_urls(self) -> dict[str, Any]:
        """The JSON stored in ``papers.source_urls``: enough for fetch to run without the source."""
        return {"files": [{"role": f.role, "name": f.name, "url": f.url, "md5": f.md5} for f in self.files],
                **self.extra}


def files_from_source_urls(data: dict[str, Any] | None) -> list[FileRef]:
    """Inverse of ``PaperRecord.source_urls`` for the fetch stage."""
    return [FileRef(f["role"], f["name"], f["url"], f.get("md5")) for f in (data or {}).get("files", [])]


@dataclass(frozen=True)
class Dropped:
    """A listed record that cannot become a paper row (deleted, no identifier, no DOI).

    Sources return it in place of the record, so the harvest counts it by reason on the
    window's cursor instead of losing it without a trace.
    """

    source: str
    reason: str
    identifier: str | None = None
