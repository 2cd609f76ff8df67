"""Gzipped tar archives split into ``.partaa``, ``.partab`` … pieces, as S1-MMAlign ships images.

The published dataset's images come as ``images.tar.gz`` (arXiv: ``images_YYYY.tar.gz``);
large ones are cut into byte pieces the way ``split -b`` names them, so a reader runs
``cat images.tar.gz.part* | tar -xzf -``. ``SplitWriter`` cuts one byte stream into such
pieces (each hashed while written by a ``HashingWriter``); ``TarGz`` writes tar members
through a raw deflate stream into it, framing the gzip header and trailer itself so the
stream is one ordinary gzip member whatever the split.

An archive that stays within one piece keeps the plain name (``images.tar.gz``): most
sources are small and a reader should not have to join a single part.

Compression level: PNG and JPEG bytes are already deflate/DCT compressed: zlib level 6
saves 3.4 % on the corpus's figure images (docs/quality.md) while deflating every byte; the default level 0 writes stored deflate blocks (``StoredDeflate``),
still a standard ``.tar.gz`` that ``tar -xzf``, ``tarfile`` (``r:gz``) and ``gzip -t``
accept; ``--gzip-level`` 1–9 compresses for whoever prefers smaller archives.
"""

from __future__ import annotations

import os
import struct
import tarfile
import zlib
from pathlib import Path

from figalign.export.manifest import HashingWriter, ShardInfo, tar_header

_GZIP_HEADER = b"\x1f\x8b\x08\x00" + b"\0\0\0\0" + b"\x00\xff"  # deflate, no name, mtime 0, OS unknown
_ZEROS = bytes(tarfile.BLOCKSIZE)


def part_suffix(index: int) -> str:
    """``split``'s suffixes: aa, ab, … az, ba, … zz; past 676 pieces the piece size is too small."""
    if not 0 <= index < 26 * 26:
        raise ValueError(f"archive piece {index} is past split's two-letter suffixes; raise the piece size")
    return "part" + chr(97 + index // 26) + chr(97 + index % 26)


class SplitWriter:
    """One logical file written as pieces of at most ``max_part_bytes`` bytes each."""

    def __init__(self, root: Path, rel: str, max_part_bytes: int):
        if max_part_bytes <= 0:
            raise ValueError("max_part_bytes must be positive")
        self.root, self.rel, self.max_part = root, rel, max_part_bytes
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        self.parts: list[tuple[str, str, int]] = []  # (rel, sha256, bytes) of finished pieces
        self._out = self._open()

    def _open(self) -> HashingWriter:
        return HashingWriter(self.root / f"{self.rel}.{part_suffix(len(self.parts))}")

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while len(view):
            room = self.max_part - self._out.tell()
            if room <= 0:
                self._finish_part()
                self._out = self._open()
                continue
            self._out.write(view[:room])
            view = view[room:]

    def _finish_part(self) -> None:
        sha, size = self._out.close()
        self.parts.append((f"{self.rel}.{part_suffix(len(self.parts))}", sha, size))

    def close(self) -> list[tuple[str, str, int]]:
        """Finish; a single piece is renamed to the plain name. Returns (rel, sha256, bytes) per piece.

        Pieces an earlier export left under this name (more pieces, or the plain file when
        there are pieces now) are removed: ``cat images.tar.gz.part*`` must join only these.
        """
        self._finish_part()
        if len(self.parts) == 1:
            rel, sha, size = self.parts[0]
            os.replace(self.root / rel, self.root / self.rel)
            self.parts = [(self.rel, sha, size)]
        self._remove_stale()
        return self.parts

    def _remove_stale(self) -> None:
        target = self.root / self.rel
        mine = {self.root / rel for rel, _, _ in self.parts}
        for path in [target, *target.parent.glob(target.name + ".part??")]:
            if path not in mine and path.is_file():
                path.unlink()

    def abort(self) -> None:
        self._out.abort()
        for rel, _, _ in self.parts:
            (self.root / rel).unlink(missing_ok=True)


class StoredDeflate:
    """Deflate level 0 written directly: stored blocks (a 5-byte header, then up to 65,535
    bytes as they are) straight into the output, without ``zlib.compressobj(0)``'s copy of
    every image into its own buffer (the largest single cost of the S1-MMAlign writer in a
    profile; the S1-MMAlign rows of ``bench/bench_export.py``, docs/benchmarks.md, show it).
    Small pieces (tar headers, padding) are gathered into one block first."""

    MAX = 0xFFFF
    SMALL = 4096

    def __init__(self, out: SplitWriter):
        self._out = out
        self._pending = bytearray()

    def _block(self, data) -> None:
        self._out.write(struct.pack("<BHH", 0, len(data), len(data) ^ 0xFFFF))
        self._out.write(data)

    def _flush_pending(self) -> None:
        view = memoryview(self._pending)
        for i in range(0, len(view), self.MAX):
            self._block(view[i:i + self.MAX])
        view.release()
        self._pending = bytearray()

    def compress(self, data) -> bytes:
        if len(data) < self.SMALL:
            self._pending += data
            if len(self._pending) >= self.MAX:
                self._flush_pending()
            return b""
        self._flush_pending()
        view = memoryview(data)
        for i in range(0, len(view), self.MAX):
            self._block(view[i:i + self.MAX])
        return b""

    def flush(self) -> bytes:
        """The pending bytes, then an empty final block (BFINAL=1) that ends the stream."""
        self._flush_pending()
        return struct.pack("<BHH", 1, 0, 0xFFFF)


class TarGz:
    """A ``.tar.gz`` written member by member into a ``SplitWriter``."""

    def __init__(self, root: Path, rel: str, *, max_part_bytes: int, level: int = 0):
        self.rel = rel
        self._out = SplitWriter(root, rel, max_part_bytes)
        self._out.write(_GZIP_HEADER)
        self._deflate = (StoredDeflate(self._out) if level == 0
                         else zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS))
        self._crc = 0
        self._size = 0  # uncompressed bytes: tar offsets and the gzip trailer's ISIZE
        self.samples = 0

    def _feed(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        out = self._deflate.compress(data)
        if out:
            self._out.write(out)

    def add(self, name: str, data: bytes, mtime: float = 0) -> None:
        self._feed(tar_header(name, len(data), int(mtime)))
        self._feed(data)
        pad = -len(data) % tarfile.BLOCKSIZE
        if pad:
            self._feed(_ZEROS[:pad])

    def close(self) -> list[ShardInfo]:
        """End-of-archive blocks, gzip trailer; the pieces as manifest entries (samples on the first)."""
        end = 2 * tarfile.BLOCKSIZE
        end += -(self._size + end) % tarfile.RECORDSIZE
        self._feed(b"\0" * end)
        self._out.write(self._deflate.flush())
        self._out.write(struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))
        parts = self._out.close()
        return [ShardInfo(rel, sha, self.samples if i == 0 else 0, size) for i, (rel, sha, size) in enumerate(parts)]

    def abort(self) -> None:
        self._out.abort()
