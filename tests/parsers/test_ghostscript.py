"""Ghostscript in a sandbox: a crafted EPS can read, write and list nothing outside its folder."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from PIL import Image

from figalign.errors import BadInputError
from figalign.parsers.ghostscript import render_eps
from figalign.parsers.options import ParseOptions
from tests.hostile_corpus import escaping_eps

pytestmark = pytest.mark.skipif(shutil.which("gs") is None, reason="Ghostscript (gs) is not installed")


def brightness(path: Path) -> float:
    with Image.open(path) as img:
        grey = img.convert("L")
        return sum(grey.histogram()[i] * i for i in range(256)) / (grey.width * grey.height)


@pytest.fixture
def planted():
    """A secret file and a would-be target in the system temp dir (what -dSAFER allows)."""
    tmp = Path(tempfile.gettempdir())
    secret = tmp / f"figalign-secret-{uuid.uuid4().hex}.txt"
    secret.write_text("SECRET CONTENTS")
    target = tmp / f"figalign-owned-{uuid.uuid4().hex}.txt"
    yield secret, target
    secret.unlink(missing_ok=True)
    target.unlink(missing_ok=True)


def test_the_crafted_eps_does_escape_plain_dsafer(planted, tmp_path):
    """The probe works: under plain -dSAFER with the default TMPDIR it reads, writes and lists."""
    secret, target = planted
    eps = tmp_path / "evil.eps"
    eps.write_bytes(escaping_eps(secret, target))
    out = tmp_path / "plain.png"
    subprocess.run(["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-dEPSCrop", "-sDEVICE=png16m", "-r72",
                    f"-sOutputFile={out}", str(eps)], check=True, capture_output=True, timeout=60,
                   env={"PATH": "/usr/bin:/bin", "TMPDIR": str(secret.parent)})
    assert target.exists() and brightness(out) < 10


def test_sandboxed_render_touches_nothing_outside_its_folder(planted, tmp_path):
    secret, target = planted
    eps = tmp_path / "evil.eps"
    eps.write_bytes(escaping_eps(secret, target))
    before = set(Path(tempfile.gettempdir()).glob("figalign-gs-*"))
    image = render_eps(eps, tmp_path / "out.png", ParseOptions())
    assert not target.exists()
    assert brightness(Path(image.path)) > 200  # white page, a small grey mark: no hit at all
    assert set(Path(tempfile.gettempdir()).glob("figalign-gs-*")) == before  # its private folder is gone too


def test_oversized_page_is_refused_before_rendering_with_its_reason(tmp_path):
    eps = tmp_path / "huge.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100000 100\nshowpage\n")
    with pytest.raises(BadInputError, match=r"huge.eps: bounding box 100000x100 pt exceeds 14400 pt"):
        render_eps(eps, tmp_path / "o.png", ParseOptions())


def test_ghostscripts_own_error_is_the_reason_and_names_the_input(tmp_path):
    eps = tmp_path / "broken.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n/x nosuchoperator\n")
    with pytest.raises(BadInputError) as err:
        render_eps(eps, tmp_path / "o.png", ParseOptions())
    message = str(err.value)
    assert message.startswith("broken.eps: ghostscript failed:") and "undefined" in message
    assert "figalign-gs-" not in message
