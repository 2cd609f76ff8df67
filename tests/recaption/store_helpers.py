"""Build a small, real store for recaption tests: paper, figure image, caption, contexts."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

from PIL import Image, ImageDraw
from sqlalchemy import Engine

from figalign.config import Settings
from figalign.storage import ArtifactStore, record_artifact
from figalign.store.db import make_engine, session_scope
from figalign.store.migrate import upgrade
from figalign.store.models import Caption, CitationContextRow, FigureRow, Paper
from figalign.store.upsert import upsert

CORPUS_PNG = Path(__file__).resolve().parents[3] / "shared/corpus/jats/plos_pone.0000010/pone.0000010.g001.png"
MODEL = "test-vlm"


def plot_png(width: int = 640, height: int = 400, seed: int = 0) -> bytes:
    """A small line-plot-like PNG made with PIL (used when the corpus is not beside the repo)."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(40, height - 40), (width - 20, height - 40)], fill="black", width=2)
    draw.line([(40, 20), (40, height - 40)], fill="black", width=2)
    points = [(40 + i * 20, height - 60 - ((i * 37 + seed * 11) % (height - 100))) for i in range((width - 60) // 20)]
    draw.line(points, fill="blue", width=3)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def figure_image() -> bytes:
    return CORPUS_PNG.read_bytes() if CORPUS_PNG.exists() else plot_png()


def make_store(tmp_path: Path, *, base_url: str = "", model: str = MODEL) -> tuple[Engine, Settings]:
    url = f"sqlite:///{tmp_path / 's.db'}"
    upgrade(url)
    settings = replace(Settings(), data_dir=tmp_path, database_url=url, vllm_base_url=base_url, vllm_model=model)
    return make_engine(url), settings


def add_figure(engine: Engine, settings: Settings, n: int, *, image: bytes | None = None,
               contexts: list[str] | None = None, **figure: object) -> int:
    """Insert paper n, its figure 1 (with image artifact, original caption, contexts); return figure id."""
    store = ArtifactStore(Path(settings.data_dir) / "artifacts")
    obj = store.put_bytes(image if image is not None else figure_image(), media_type="image/png", ext=".png")
    with session_scope(engine) as session:
        paper_id = upsert(session, Paper, dict(
            source="local", external_id=f"paper-{n}", version="", title=f"Reporter activation in cells, study {n}",
            abstract="We show that the treatment activates a fluorescent reporter within one hour in cultured cells."),
            key=("source", "external_id", "version"))
        artifact_id = record_artifact(session, obj)
        values = dict(figure_key=f"local:paper-{n}:fig1", paper_id=paper_id, label="Figure 1", number="1",
                      kind="figure", ordinal=0, image_artifact_id=artifact_id, parser="jats", parser_version="1")
        values.update(figure)
        figure_id = upsert(session, FigureRow, values, key=("figure_key",))
        upsert(session, Caption, dict(figure_id=figure_id, kind="original", model="", prompt_hash="", params_hash="",
                                      text="Fluorescence over time for treated and control cells."),
               key=("figure_id", "kind", "model", "prompt_hash", "params_hash"))
        texts = contexts if contexts is not None else [
            "As shown in Figure 1, treated cells brighten steadily during the first hour.",
            "Controls (Fig. 1, dashed) remain flat.",
        ]
        for position, text in enumerate(texts):
            upsert(session, CitationContextRow, dict(figure_id=figure_id, position=position, text=text,
                                                     mention="Figure 1"),
                   key=("figure_id", "position"))
    return figure_id
