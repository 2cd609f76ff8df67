"""A small real store for score/report tests: papers, PNG artifacts, figures, captions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from figalign.store.db import make_engine, session_scope
from figalign.store.migrate import upgrade
from figalign.store.models import Artifact, Caption, FigureRow, Paper
from figalign.store.upsert import upsert
from tests.metrics.tiny_models import make_png

CAPTION_KEY = ("figure_id", "kind", "model", "prompt_hash", "params_hash")


@dataclass
class Store:
    engine: object
    url: str
    figures: list[int] = field(default_factory=list)
    captions: dict[str, int] = field(default_factory=dict)  # "<figure n>:<kind>" -> caption id


def make_store(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    upgrade(url)
    return Store(engine=make_engine(url), url=url)


def add_paper(store: Store, n: int, source: str, discipline: str | None) -> int:
    with session_scope(store.engine) as session:
        return upsert(session, Paper, dict(source=source, external_id=f"p{n}", version="", discipline=discipline),
                      key=("source", "external_id", "version"))


def add_figure(store: Store, tmp_path: Path, paper_id: int, n: int, *, color=(200, 30, 30), image_bytes=None,
               original: str | None = "The cells grow.", recaption: str | None = None,
               recaption_status: str = "accepted", filter_reason: str | None = None) -> int:
    """Figure n with a real PNG artifact, its original caption and optionally a recaption."""
    path = tmp_path / "img" / f"fig{n}.png"
    if image_bytes is None:
        make_png(path, color)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes)
    data = path.read_bytes()
    with session_scope(store.engine) as session:
        art = upsert(session, Artifact, dict(sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                                             media_type="image/png", storage_uri=str(path)), key=("sha256",))
        fid = upsert(session, FigureRow, dict(figure_key=f"k:{n}", paper_id=paper_id, label=f"Figure {n}",
                                              kind="figure", image_artifact_id=art, parser="t", parser_version="1",
                                              filter_reason=filter_reason), key=("figure_key",))
        for kind, text, status, model in (("original", original, "accepted", ""),
                                          ("recaption", recaption, recaption_status, "vlm")):
            if text is None:
                continue
            cid = upsert(session, Caption, dict(figure_id=fid, kind=kind, model=model, prompt_hash="p" if model else "",
                                                params_hash="h" if model else "", text=text, status=status),
                         key=CAPTION_KEY)
            store.captions[f"{n}:{kind}"] = cid
    store.figures.append(fid)
    return fid
