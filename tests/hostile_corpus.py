"""Test helper: a folder of hostile and broken papers, generated at test time (nothing large
is committed), beside the committed good ones.

``build(folder, secret, target)`` writes every input and returns {entry name: what its
outcome's reason must contain}. ``secret`` is a file outside the folder whose contents must
never appear in any output; ``target`` a file no input may create.
"""

from __future__ import annotations

import gzip
import io
import shutil
import struct
import tarfile
import zlib
from pathlib import Path

from tests.conftest import FIXTURES

GOOD = ("pone.0000010", "2020.acl-main.207.pdf", "pbio.0020317.pdf")
NASTY_CAPTION = "Rates over time\u202e (reversed)\u202c of cells."  # bidi override: legal XML
CONTROL_CAPTION = "Counts\x00 per\x07 hour\x1b of cells."  # NUL, BEL, ESC: only a LaTeX source can hold them


def tar_gz(path: Path, members: dict[str, bytes], *, gz: bool = True) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue()) if gz else buf.getvalue())


def latex_doc(figure: str, caption: str = "A figure that should not hurt.") -> bytes:
    return (b"\\documentclass{article}\\title{A hostile paper}\\begin{document}\\maketitle\n"
            b"As Figure~\\ref{fig:a} shows, things happen.\n\\begin{figure}" + figure.encode() +
            b"\\caption{" + caption.encode() + b"\\label{fig:a}}\\end{figure}\\end{document}\n")


def escaping_eps(secret: Path, target: Path) -> bytes:
    """Reads ``secret``, writes ``target``, lists the secret's folder; any success paints the page black."""
    return f"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 200 50
/hits 0 def
{{ ({secret}) (r) file 200 string readstring pop pop /hits hits 1 add def }} stopped pop
{{ ({target}) (w) file dup (owned) writestring closefile /hits hits 1 add def }} stopped pop
{{ ({secret.parent}/figalign-secret-*) {{ pop /hits hits 1 add def }} 400 string filenameforall }} stopped pop
hits 0 gt {{ 0 setgray 0 0 200 50 rectfill }} {{ 0.5 setgray 0 0 20 20 rectfill }} ifelse showpage
""".encode()


def png_header_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + \
        chunk(b"IEND", b"")


def jats(caption: str, graphic: str, doctype: str = "") -> bytes:
    return (f'<?xml version="1.0"?>{doctype}<article xmlns:xlink="http://www.w3.org/1999/xlink"><front>'
            "<article-meta><title-group><article-title>Hostile JATS</article-title></title-group>"
            "</article-meta></front><body><sec><title>Results</title><p>See Figure 1 for the rates.</p>"
            f'<fig id="f1"><label>Figure 1</label><caption><p>{caption}</p></caption>'
            f'<graphic xlink:href="{graphic}"/></fig></sec></body></article>').encode()


def build(folder: Path, secret: Path, target: Path) -> dict[str, str]:
    """Good papers plus hostile ones; {name: expected reason fragment} for the hostile ones."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in GOOD:
        src = FIXTURES / "papers" / name
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, folder / name)
    expect: dict[str, str] = {}
    (folder / "empty.pdf").write_bytes(b"")
    expect["empty.pdf"] = "empty file"
    (folder / "mystery.bin").write_bytes(bytes(range(256)) * 8)
    expect["mystery.bin"] = "cannot tell what kind of paper"
    (folder / "xxe.xml").write_bytes(jats("x", "x.png", f'<!DOCTYPE article [<!ENTITY x SYSTEM "file://{secret}">]>')
                                     .replace(b"<p>x</p>", b"<p>&x;</p>"))
    expect["xxe.xml"] = "entit"
    (folder / "truncated.pdf").write_bytes((FIXTURES / "papers" / "pbio.0020317.pdf").read_bytes()[:3000])
    expect["truncated.pdf"] = "PDF"
    # a gzip bomb: 200 MB of zeros in one member, ~200 KB on disk
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("main.tex")
        info.size = 200 << 20
        tar.addfile(info, _Zeros(info.size))
    (folder / "bomb.tar.gz").write_bytes(buf.getvalue())
    expect["bomb.tar.gz"] = "archive unpacks to more than"
    tar_gz(folder / "traversal.tar.gz", {"../../../evil.tex": b"\\documentclass{article}"})
    expect["traversal.tar.gz"] = "no .tex"
    tar_gz(folder / "escape.tar.gz", {"main.tex": latex_doc("\\includegraphics{fig.eps}"),
                                      "fig.eps": escaping_eps(secret, target)})
    expect["escape.tar.gz"] = ""  # parses (the figure is drawn in its sandbox): checked by content
    tar_gz(folder / "loop.tar.gz", {"main.tex": latex_doc("\\includegraphics{spin.eps}"),
                                    "spin.eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n{} loop\n"})
    expect["loop.tar.gz"] = "quarantined after 2 tries: over-budget: wall"
    nasty = folder / "nasty"
    nasty.mkdir()
    (nasty / "nasty.xml").write_bytes(jats(NASTY_CAPTION, "big.png"))
    (nasty / "big.png").write_bytes(png_header_bomb(30000, 30000))
    expect["nasty"] = ""  # parses; its caption is stored clean and its bomb image refused
    tar_gz(folder / "control.tar.gz", {"main.tex": latex_doc("\\includegraphics{none.png}", CONTROL_CAPTION)})
    expect["control.tar.gz"] = ""  # parses; its caption is stored without the control characters
    return expect


class _Zeros(io.RawIOBase):
    """A readable stream of ``n`` zero bytes, without holding them in memory."""

    def __init__(self, n: int):
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        k = min(len(b), self.left)
        b[:k] = b"\0" * k
        self.left -= k
        return k
