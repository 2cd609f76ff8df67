"""Pick a parser for a path by content, and run it.

Detection reads bytes, not file names: arXiv e-prints named .tar.gz are sometimes plain
tar, gzip of a single .tex, or a PDF.
"""

from __future__ import annotations

import gzip
import importlib
import tarfile
import zipfile
from pathlib import Path

from figalign.errors import BadInputError
from figalign.parsers.options import ParseOptions
from figalign.records import ParsedPaper

KINDS = ("jats", "tei", "latex", "pdf")


def _xml_kind(head: bytes) -> str | None:
    text = head.decode("utf-8", "replace")
    if "<TEI" in text or "tei-c.org" in text:
        return "tei"
    if "<article" in text or "JATS" in text or "NLM" in text or "<!DOCTYPE article" in text:
        return "jats"
    return None


def detect_kind(path: Path) -> str:
    """Return one of KINDS for a file or directory, by its content."""
    path = Path(path)
    if path.is_dir():
        if any(path.glob("*.tex")) or any(path.rglob("*.tex")):
            return "latex"
        for xml in list(path.glob("*.xml")) + list(path.glob("*.nxml")):
            if _xml_kind(xml.read_bytes()[:4096]) == "jats":
                return "jats"
        if any(path.glob("*.pdf")):
            return "pdf"
        raise BadInputError(f"no parsable paper in directory {path}")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        raise BadInputError(f"empty file: {path}")
    if head.startswith(b"%PDF"):
        return "pdf"
    if head.lstrip().startswith(b"<"):
        kind = _xml_kind(head)
        if kind:
            return kind
        raise BadInputError(f"XML of unknown kind: {path}")
    if head.startswith(b"\x1f\x8b") or tarfile.is_tarfile(path) or zipfile.is_zipfile(path):
        if head.startswith(b"\x1f\x8b") and not tarfile.is_tarfile(path):
            try:
                with gzip.open(path, "rb") as gz:
                    inner = gz.read(8)
            except (OSError, EOFError) as exc:
                raise BadInputError(f"corrupt gzip file: {path}: {exc}") from exc
            if inner.startswith(b"%PDF"):
                return "pdf"
        return "latex"
    if b"\\documentclass" in head or b"\\begin{document}" in head or b"\\section" in head:
        return "latex"
    raise BadInputError(f"cannot tell what kind of paper this is: {path}")


def parser_module(kind: str):
    """Import the parser module for a kind lazily (PyMuPDF and lxml load only when used)."""
    if kind not in KINDS:
        raise BadInputError(f"unknown parser kind {kind!r}; choose one of {', '.join(KINDS)}")
    return importlib.import_module(f"figalign.parsers.{kind}")


def parse_path(
    path: Path,
    *,
    kind: str = "auto",
    out_dir: Path,
    pdf: Path | None = None,
    paper_id: str | None = None,
    options: ParseOptions | None = None,
) -> ParsedPaper:
    """Parse one paper with the parser for its kind (detected when ``kind`` is auto)."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"no such file: {path}")
    if kind == "auto":
        kind = detect_kind(path)
    module = parser_module(kind)
    return module.parse(
        path,
        out_dir=Path(out_dir),
        pdf=Path(pdf) if pdf else None,
        paper_id=paper_id or default_paper_id(path),
        options=options or ParseOptions(),
    )


def default_paper_id(path: Path) -> str:
    """A paper id from a file name: strip every suffix (".tar.gz", ".tei.xml")."""
    name = Path(path).name
    for suffix in (".tar.gz", ".tei.xml", ".tgz", ".nxml", ".xml", ".pdf", ".gz", ".zip", ".tar", ".tex"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
