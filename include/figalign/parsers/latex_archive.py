"""Safe unpacking of arXiv e-prints into a private temporary directory.

An e-print is whatever the author uploaded: tar.gz, a plain tar named .tar.gz, a gzipped
single .tex, a zip (sometimes with more archives inside), or just a PDF. The kind is told
from bytes, never from the name. Every member is checked before it touches the disk
(no absolute paths, no "..", no links or device files) and the total member count and
size are bounded, so a hostile or broken upload costs one paper, not the worker.
"""

from __future__ import annotations

import gzip
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from figalign.errors import BadInputError
from figalign.parsers.options import ParseOptions

_CHUNK = 1 << 20
_NESTED_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
_MAX_NESTING = 2


@dataclass
class Unpacked:
    """Where the sources ended up: a directory tree, or a PDF when the submission is PDF-only."""

    root: Path | None = None
    pdf: Path | None = None
    warnings: list[str] = field(default_factory=list)


class _Budget:
    """Running totals of members and bytes across the archive and any nested ones."""

    def __init__(self, options: ParseOptions) -> None:
        self.max_members = options.max_archive_members
        self.max_bytes = options.max_archive_bytes
        self.members = 0
        self.bytes = 0

    def add_member(self) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise BadInputError(f"archive has more than {self.max_members} members (archive bomb?)")

    def add_bytes(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.max_bytes:
            raise BadInputError(f"archive unpacks to more than {self.max_bytes} bytes (archive bomb?)")


def _skip_reason(name: str) -> str | None:
    """Why a member name must not be written, or None when it is safe and wanted."""
    if not name or "\x00" in name:
        return "empty name"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "absolute path"
    parts = [p for p in PurePosixPath(norm).parts if p not in ("", ".")]
    if ".." in parts:
        return "path traversal"
    if not parts:
        return "empty name"
    if "__MACOSX" in parts or parts[-1].startswith("._") or parts[-1] == ".DS_Store":
        return "macos metadata"
    return None


def _target(dest: Path, name: str) -> Path:
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".")]
    target = dest.joinpath(*parts)
    if not target.resolve().is_relative_to(dest.resolve()):
        raise BadInputError(f"member escapes the extraction folder: {name!r}")
    return target


def _copy_stream(src, target: Path, budget: _Budget) -> None:
    """Copy a member's bytes in chunks, counting every byte against the budget."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    with open(target, "wb") as out:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            budget.add_bytes(len(chunk))
            out.write(chunk)


def _member_problem(member: tarfile.TarInfo, dest: Path) -> str | None:
    """Reason a tar member is refused: unsafe name, a link, a device or fifo, or the data filter."""
    reason = _skip_reason(member.name)
    if reason:
        return reason
    if member.issym() or member.islnk():
        return "link"
    if member.isdev() or member.isfifo() or member.ischr() or member.isblk():
        return "device or fifo"
    try:
        tarfile.data_filter(member, str(dest))
    except tarfile.FilterError as exc:
        return f"refused by tar data filter ({type(exc).__name__})"
    return None


def _extract_tar(tar: tarfile.TarFile, dest: Path, budget: _Budget, warnings: list[str]) -> None:
    for member in tar:
        budget.add_member()
        problem = _member_problem(member, dest)
        if problem:
            if problem != "macos metadata":
                warnings.append(f"skipped archive member {member.name!r}: {problem}")
            continue
        target = _target(dest, member.name)
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if not member.isfile():
            warnings.append(f"skipped archive member {member.name!r}: not a regular file")
            continue
        if member.size + budget.bytes > budget.max_bytes:
            raise BadInputError(f"archive unpacks to more than {budget.max_bytes} bytes (archive bomb?)")
        src = tar.extractfile(member)
        if src is None:
            continue
        with src:
            _copy_stream(src, target, budget)


def _zip_is_link(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)


def _extract_zip(zf: zipfile.ZipFile, dest: Path, budget: _Budget, warnings: list[str]) -> None:
    for info in zf.infolist():
        budget.add_member()
        reason = _skip_reason(info.filename) or ("link or device" if _zip_is_link(info) else None)
        if info.flag_bits & 0x1:
            reason = "encrypted"
        if reason:
            if reason != "macos metadata":
                warnings.append(f"skipped archive member {info.filename!r}: {reason}")
            continue
        target = _target(dest, info.filename)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if info.file_size + budget.bytes > budget.max_bytes:
            raise BadInputError(f"archive unpacks to more than {budget.max_bytes} bytes (archive bomb?)")
        try:
            with zf.open(info) as src:
                _copy_stream(src, target, budget)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            # one damaged member (bad CRC) should not cost the paper its other files
            target.unlink(missing_ok=True)
            warnings.append(f"skipped damaged archive member {info.filename!r}: {exc}")


def _gunzip(path: Path, out: Path, budget: _Budget) -> None:
    """Decompress a gzip file to ``out`` with the byte budget enforced while streaming."""
    try:
        with gzip.open(path, "rb") as src:
            _copy_stream(src, out, budget)
    except (OSError, EOFError, zlib.error) as exc:
        raise BadInputError(f"corrupt gzip data in {path.name}: {exc}") from exc


def _sniff(path: Path) -> str:
    """What a file is by its bytes: gzip, zip, tar, pdf, tex or unknown."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"%PDF"):
        return "pdf"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if _looks_like_tar(path):
        return "tar"
    if b"\\" in head and (b"\\documentclass" in head or b"\\begin" in head or b"\\section" in head
                          or b"\\input" in head or b"\\documentstyle" in head or b"\\def" in head):
        return "tex"
    if b"\x00" not in head and head.strip():
        return "text"
    return "unknown"


def _looks_like_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, tarfile.TarError):
        return False


def _unpack_file(path: Path, dest: Path, budget: _Budget, warnings: list[str], work: Path, depth: int) -> str:
    """Unpack one file into dest by its content; returns the kind it turned out to be."""
    kind = _sniff(path)
    if kind == "gzip":
        if depth > _MAX_NESTING + 1:
            raise BadInputError("archive nested too deeply")
        inner = work / f"gunzip-{depth}-{budget.members}"
        _gunzip(path, inner, budget)
        inner_kind = _sniff(inner)
        if inner_kind in ("tex", "text"):
            dest.mkdir(parents=True, exist_ok=True)
            shutil.move(str(inner), dest / _gzip_member_name(path))
            return "tex"
        kind = _unpack_file(inner, dest, budget, warnings, work, depth + 1)
        if kind != "pdf":
            inner.unlink(missing_ok=True)  # the decompressed copy is no longer needed
        return kind
    if kind == "tar":
        try:
            with tarfile.open(path, "r:") as tar:
                _extract_tar(tar, dest, budget, warnings)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise BadInputError(f"corrupt tar archive {path.name}: {exc}") from exc
        return "tar"
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as zf:
                _extract_zip(zf, dest, budget, warnings)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise BadInputError(f"corrupt zip archive {path.name}: {exc}") from exc
        return "zip"
    if kind in ("tex", "text"):
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / "main.tex")
        return "tex"
    return kind


def _gzip_member_name(path: Path) -> str:
    """Name for a gunzipped single file: the gzip header's name when it is a .tex, else main.tex."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if len(head) > 10 and head[3] & 0x08:
        end = head.find(b"\x00", 10)
        name = head[10:end].decode("latin-1") if end > 10 else ""
        name = PurePosixPath(name.replace("\\", "/")).name
        if name.lower().endswith(".tex") and _skip_reason(name) is None:
            return name
    return "main.tex"


def _unpack_nested(dest: Path, budget: _Budget, warnings: list[str], work: Path) -> None:
    """Unpack archives found inside the tree (zip in zip, tar.gz in zip) next to themselves."""
    tried: set[Path] = set()
    for depth in range(_MAX_NESTING):
        nested = [p for p in dest.rglob("*")
                  if p.is_file() and p.name.lower().endswith(_NESTED_SUFFIXES) and p not in tried]
        tried.update(nested)
        if not nested:
            return
        for arc in nested:
            sub = arc.parent / (arc.name + ".d")
            try:
                kind = _unpack_file(arc, sub, budget, warnings, work, depth + 1)
            except BadInputError as exc:
                if "bomb" in str(exc):
                    raise
                warnings.append(f"nested archive {arc.name} not unpacked: {exc}")
                continue
            if kind in ("pdf", "unknown", "text"):
                continue
            arc.unlink()


def unpack(path: Path, work: Path, options: ParseOptions) -> Unpacked:
    """Unpack an e-print (file or directory) under ``work``; a directory is used in place."""
    path = Path(path)
    result = Unpacked()
    if path.is_dir():
        result.root = path
        return result
    if not path.is_file():
        raise BadInputError(f"no such file: {path}")
    budget = _Budget(options)
    dest = work / "src"
    dest.mkdir(parents=True, exist_ok=True)
    kind = _unpack_file(path, dest, budget, result.warnings, work, 0)
    if kind == "pdf":
        pdf = _find_pdf(path, work)
        result.pdf = pdf
        return result
    if kind in ("unknown",):
        raise BadInputError(f"not an arXiv e-print (unknown format): {path.name}")
    _unpack_nested(dest, budget, result.warnings, work)
    result.root = dest
    return result


def _find_pdf(path: Path, work: Path) -> Path:
    """The PDF of a PDF-only submission: the file itself, or its gunzipped copy in ``work``."""
    if _sniff(path) == "pdf":
        return path
    for cand in sorted(work.glob("gunzip-*")):
        if _sniff(cand) == "pdf":
            target = cand.with_suffix(".pdf")
            cand.rename(target)
            return target
    raise BadInputError(f"PDF-only submission could not be located: {path.name}")
