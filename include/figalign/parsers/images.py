"""Image normalisation: every figure image becomes a bounded PNG with hashes.

Parsers receive TIFF, GIF, JPEG, PNG, PDF pages and EPS; downstream stages (filters,
recaptioning, CLIP) want one predictable format. Pixel counts are bounded before
decoding so a decompression bomb fails one figure, not the worker.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from pathlib import Path

from figalign.errors import BadInputError
from figalign.records import FigureImage

MAX_PIXELS = int(os.environ.get("FIGALIGN_MAX_IMAGE_PIXELS", str(120_000_000)))
DEFAULT_MAX_SIDE = 4096


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def perceptual_hash(img) -> str | None:
    """64-bit pHash as 16 hex chars, for near-duplicate detection."""
    import imagehash

    return str(imagehash.phash(img))


def open_image(data: bytes):
    """Decode image bytes with PIL, refusing decompression bombs and corrupt files."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_PIXELS:
                raise BadInputError(f"image too large: {img.width}x{img.height} pixels > {MAX_PIXELS}")
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInputError(f"decompression bomb refused: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInputError(f"undecodable image: {exc}") from exc
    return img


def _to_rgb(img):
    """Flatten modes PNG cannot hold (CMYK, 16-bit, palette with alpha) onto white."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v * (1 / 256)).convert("L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGB", img.size, (255, 255, 255))
        bg.paste(img, mask=img.split()[-1])
        return bg
    if img.mode not in ("RGB", "L", "1"):
        return img.convert("RGB")
    if img.mode == "1":
        return img.convert("L")
    return img


def save_png(img, out_path: Path, *, max_side: int = DEFAULT_MAX_SIDE) -> FigureImage:
    """Write a PIL image as PNG atomically and describe it."""
    img = _to_rgb(img)
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    data = buf.getvalue()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=".tmp-", suffix=".png")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, out_path)
    return FigureImage(
        path=str(out_path),
        width=img.width,
        height=img.height,
        sha256=sha256_bytes(data),
        phash=perceptual_hash(img),
        media_type="image/png",
    )


def convert_to_png(data: bytes, out_path: Path, *, max_side: int = DEFAULT_MAX_SIDE) -> FigureImage:
    """Decode raster bytes (TIFF/GIF/JPEG/PNG/BMP/WebP) and save them as PNG.

    Multi-frame files (animated GIF, multi-page TIFF) keep their first frame.
    """
    img = open_image(data)
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    return save_png(img, out_path, max_side=max_side)


def pixmap_to_png(pix, out_path: Path, *, max_side: int = DEFAULT_MAX_SIDE) -> FigureImage:
    """Save a PyMuPDF Pixmap (a rendered crop) as PNG with hashes."""
    from PIL import Image

    mode = "RGB" if pix.n - (1 if pix.alpha else 0) >= 3 else "L"
    if pix.alpha:
        mode = mode + "A"
    img = Image.frombytes(mode, (pix.width, pix.height), pix.samples)
    return save_png(img, out_path, max_side=max_side)
