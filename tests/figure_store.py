"""Test helper: a migrated SQLite store filled with papers, figures, captions and metrics.

Rows go in through ``upsert`` (the only way figalign writes), images through the
``ArtifactStore``, exactly as harvest and parse would leave them.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

from figalign.dedup import image_hashes, phash_columns
from figalign.storage import ArtifactStore, record_artifact
from figalign.store.db import make_engine, session_scope
from figalign.store.migrate import upgrade
from figalign.store.models import Caption, CitationContextRow, FigureRow, Metric, Paper
from figalign.store.upsert import upsert

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus"
CAPTION_KEY = ("figure_id", "kind", "model", "prompt_hash", "params_hash")


def corpus_file(*parts: str) -> Path:
    """A file of the shared corpus, or skip the calling test with the reason."""
    import pytest

    path = CORPUS.joinpath(*parts)
    if not path.exists():  # openly licensed corpus files also live in the committed fixtures
        committed = sorted((ROOT / "tests" / "fixtures").rglob(parts[-1]))
        if committed:
            return committed[0]
        pytest.skip(f"needs the shared corpus at {path} (../shared beside the checkout)")
    return path


def synthetic_figure(seed: int, size: tuple[int, int] = (480, 360)) -> bytes:
    """A plot-like PNG (axes, lines, markers, noise) over 5 KB, different for each seed."""
    from PIL import Image, ImageDraw

    rnd = random.Random(seed)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    w, h = size
    draw.line([(30, h - 30), (w - 10, h - 30)], fill="black", width=2)
    draw.line([(30, 10), (30, h - 30)], fill="black", width=2)
    for _ in range(4):
        colour = tuple(rnd.randrange(256) for _ in range(3))
        pts = [(30 + i * (w - 40) // 20, rnd.randrange(15, h - 35)) for i in range(21)]
        draw.line(pts, fill=colour, width=2)
    for _ in range(rnd.randrange(3, 8)):
        x, y = rnd.randrange(40, w - 60), rnd.randrange(20, h - 60)
        draw.rectangle([x, y, x + rnd.randrange(10, 60), y + rnd.randrange(10, 60)],
                       fill=tuple(rnd.randrange(256) for _ in range(3)))
    for _ in range(400):
        x, y = rnd.randrange(w), rnd.randrange(h)
        draw.point((x, y), fill=tuple(rnd.randrange(256) for _ in range(3)))
    return png_bytes(img)


def png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def reencode_jpeg_png(data: bytes, quality: int = 80) -> bytes:
    """PNG -> JPEG -> PNG: same picture, different pixels and bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, format="JPEG", quality=quality)
    return png_bytes(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def resized(data: bytes, scale: float) -> bytes:
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    return png_bytes(img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.LANCZOS))


class FigureStore:
    """A fresh store under ``tmp_path`` with helpers to add rows."""

    def __init__(self, tmp_path: Path, url: str | None = None):
        self.url = url or f"sqlite:///{tmp_path / 's.db'}"
        upgrade(self.url)
        self.engine = make_engine(self.url)
        self.data_dir = tmp_path / "data"
        self.store = ArtifactStore(self.data_dir)
        self._n = 0

    def paper(self, external_id: str, *, source: str = "pmc", licence: str | None = "cc-by", **extra) -> int:
        cc_by = "https://creativecommons.org/licenses/by/4.0/"
        values = dict(source=source, external_id=external_id, version=extra.pop("version", ""),
                      title=extra.pop("title", f"Title of {external_id}"),
                      doi=extra.pop("doi", f"10.1371/{external_id}"),
                      categories=extra.pop("categories", ["q-bio.NC"]), discipline=extra.pop("discipline", "biology"),
                      licence=licence, licence_url=extra.pop("licence_url", cc_by),
                      retracted=extra.pop("retracted", False), source_urls={}, **extra)
        with session_scope(self.engine) as s:
            return upsert(s, Paper, values, ("source", "external_id", "version"))

    def figure(self, paper_id: int, image: bytes | Path | None, *, caption: str | None = "Figure 1. A measured curve.",
               kind: str = "figure", name: str | None = None, contexts: list[str] = (),
               recaptions: list[dict] = (), metrics: list[dict] = (), **columns) -> int:
        """Add a figure with its original caption, contexts, recaptions and metrics."""
        self._n += 1
        name = name or f"fig{self._n}"
        data = Path(image).read_bytes() if isinstance(image, Path) else image
        with session_scope(self.engine) as s:
            key = f"p{paper_id}:{name}"
            values = dict(figure_key=key, paper_id=paper_id, label=f"Figure {self._n}", kind=kind,
                          parser="test", parser_version="1.0", **self._image(s, data), **columns)
            fid = upsert(s, FigureRow, values, ("figure_key",))
            if caption is not None:
                upsert(s, Caption, dict(figure_id=fid, kind="original", model="", prompt_hash="", params_hash="",
                                        text=caption, status="accepted"), CAPTION_KEY)
            for pos, text in enumerate(contexts):
                upsert(s, CitationContextRow, dict(figure_id=fid, position=pos, text=text, section="Results",
                                                   mention="Fig. 1"), ("figure_id", "position"))
            cap_ids = {"original": self._caption_id(s, fid)}
            for rc in recaptions:
                cap_ids["recaption"] = upsert(s, Caption, dict(dict(figure_id=fid, kind="recaption", params_hash="p",
                                                                    status="accepted"), **rc), CAPTION_KEY)
            for m in metrics:
                m = dict(m)
                kind_ = m.pop("caption_kind", "original")
                upsert(s, Metric, dict(figure_id=fid, caption_id=cap_ids[kind_], caption_kind=kind_, **m),
                       ("caption_id", "metric", "model"))
        return fid

    @staticmethod
    def _caption_id(session, fid: int) -> int | None:
        from sqlalchemy import select

        return session.execute(select(Caption.id).where(Caption.figure_id == fid, Caption.kind == "original")).scalar()

    def _image(self, session, data: bytes | None) -> dict:
        if data is None:
            return dict(image_artifact_id=None)
        obj = self.store.put_bytes(data, media_type="image/png", ext=".png")
        values = dict(image_artifact_id=record_artifact(session, obj))
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                values.update(width=img.width, height=img.height)
            values["phash"], values["pixel_sha256"] = image_hashes(data)
        except OSError:
            values.update(phash=None, pixel_sha256=None)
        values.update(phash_columns(values["phash"]))
        return values
