"""EPS/PS figures through Ghostscript, in a sandbox of one empty folder.

``gs -dSAFER`` still lets a PostScript program read, write and list everything under the
temp directory Ghostscript is given (``TMPDIR``, default ``/tmp``) — where other papers'
work folders live. So every call gets a fresh, empty private folder holding only a copy of
the one input file: it is the call's working directory, its ``TMPDIR``/``HOME`` and the only
folder ``--permit-file-*`` names, the environment is reduced to ``PATH``, and output goes
there too. The page is bounded before rendering (the ``%%BoundingBox`` must exist within
``max_page_side_pt`` and the resolution is chosen so the bitmap fits ``max_side``). When
Ghostscript fails, the reason is its own error line, with the private folder's path
replaced by the input's name.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from figalign.errors import BadInputError
from figalign.parsers import images
from figalign.parsers.options import ParseOptions
from figalign.records import FigureImage

TIMEOUT_S = 60
DEFAULT_PAGE = (612.0, 792.0)  # US letter, Ghostscript's default page, in points
_BBOX = re.compile(r"%%BoundingBox:\s*(-?[\d.]+)\s+(-?[\d.]+)\s+(-?[\d.]+)\s+(-?[\d.]+)")


def bounding_box(path: Path) -> tuple[float, float] | None:
    """(width, height) in points from the DSC header, or None when there is none."""
    with open(path, "rb") as fh:
        head = fh.read(8192).decode("latin-1")
    m = _BBOX.search(head)
    if not m:
        return None
    x0, y0, x1, y1 = (float(v) for v in m.groups())
    return abs(x1 - x0), abs(y1 - y0)


def render_eps(path: Path, out: Path, options: ParseOptions) -> FigureImage:
    """Render the first page of an EPS/PS file to PNG, cropped to its bounding box."""
    gs = shutil.which("gs")
    if gs is None:
        raise BadInputError("eps needs ghostscript (gs not found on PATH)")
    bbox = bounding_box(path) or DEFAULT_PAGE  # without one, Ghostscript renders its default page
    if min(bbox) <= 0:
        raise BadInputError(f"{path.name}: empty %%BoundingBox ({bbox[0]:.0f}x{bbox[1]:.0f} pt)")
    if max(bbox) > options.max_page_side_pt:
        raise BadInputError(f"{path.name}: bounding box {bbox[0]:.0f}x{bbox[1]:.0f} pt exceeds "
                            f"{options.max_page_side_pt:.0f} pt")
    dpi = max(10.0, min(float(options.dpi), options.max_side * 72.0 / max(bbox)))
    with tempfile.TemporaryDirectory(prefix="figalign-gs-") as tmp:
        box = Path(tmp)
        src = box / ("input" + (path.suffix.lower() if path.suffix.lower() in (".eps", ".ps", ".epsi") else ".eps"))
        shutil.copyfile(path, src)
        png = box / "page.png"
        proc = _run(gs, src, png, box, dpi)
        if not png.exists() or png.stat().st_size == 0:
            raise BadInputError(f"{path.name}: ghostscript failed: {_error(proc, src, path.name)}")
        return images.convert_to_png(png.read_bytes(), out, max_side=options.max_side)


def _run(gs: str, src: Path, png: Path, box: Path, dpi: float) -> subprocess.CompletedProcess:
    folder = str(box) + "/"
    cmd = [gs, "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-dNOPROMPT", "-dEPSCrop", "-sDEVICE=png16m",
           f"-r{dpi:.1f}", "-dFirstPage=1", "-dLastPage=1", "-dTextAlphaBits=4", "-dGraphicsAlphaBits=4",
           f"--permit-file-read={folder}", f"--permit-file-write={folder}", f"--permit-file-control={folder}",
           f"-sOutputFile={png}", str(src)]
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(box), "TEMP": str(box), "TMP": str(box), "HOME": str(box)}
    try:
        return subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S, check=False, cwd=box, env=env)
    except subprocess.TimeoutExpired as exc:
        raise BadInputError(f"{src.name}: ghostscript timed out after {TIMEOUT_S} s") from exc


def _error(proc: subprocess.CompletedProcess, src: Path, name: str) -> str:
    """Ghostscript's own error (it prints PostScript errors on stdout), temp paths hidden."""
    lines = [ln.strip() for ln in (proc.stdout + b"\n" + proc.stderr).decode("utf-8", "replace").splitlines()
             if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "error" in ln] or lines
    text = errors[0] if errors else f"exit code {proc.returncode}"
    return text.replace(str(src), name).replace(str(src.parent) + "/", "")[:300]
