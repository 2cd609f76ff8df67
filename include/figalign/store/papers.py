"""Writing a ParsedPaper into the store: figures, images, contexts and original captions.

The parse stage calls ``save_parsed``; every row is upserted on its natural key, so
re-parsing a paper updates rows in place. Figures that a newer parse no longer finds are
removed with their contexts and captions, so the store always mirrors the latest parse.

A figure whose image pixels or original caption changed (a new arXiv version, a fixed
parser) keeps its row, but what was derived from the old content is dropped — its model
recaptions and all its metrics — and the recaption and score stages are queued again for
it, so no recaption or score ever describes content the figure no longer has.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from figalign.records import Figure, ParsedPaper
from figalign.storage import ArtifactStore, record_artifact
from figalign.store.models import Caption, CitationContextRow, FigureRow, Metric, Paper
from figalign.store.queue import requeue
from figalign.store.upsert import upsert

CAPTION_KEY = ("figure_id", "kind", "model", "prompt_hash", "params_hash")


def pixel_sha256(path: str | Path) -> str:
    """sha256 of decoded RGB pixels + size: equal for the same image in any encoding."""
    import hashlib

    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB")
        digest = hashlib.sha256(f"{rgb.width}x{rgb.height}".encode())
        digest.update(rgb.tobytes())
    return digest.hexdigest()


def _save_image(session: Session, store: ArtifactStore, fig: Figure) -> dict:
    if fig.image is None or not Path(fig.image.path).exists():
        return dict(image_artifact_id=None, width=None, height=None, phash=None, pixel_sha256=None)
    obj = store.put_file(fig.image.path, media_type=fig.image.media_type)
    artifact_id = record_artifact(session, obj)
    return dict(image_artifact_id=artifact_id, width=fig.image.width, height=fig.image.height,
                phash=fig.image.phash, pixel_sha256=pixel_sha256(fig.image.path))


def _save_figure(session: Session, store: ArtifactStore, paper: Paper, parsed: ParsedPaper, fig: Figure) -> int:
    key = f"{paper.source}:{paper.external_id}{paper.version and 'v' + paper.version.lstrip('v')}:{fig.id.split(':', 1)[-1]}"
    values = dict(
        figure_key=key, paper_id=paper.id, label=fig.label, number=fig.number, kind=fig.kind,
        ordinal=fig.ordinal, page=fig.page, bbox=fig.bbox,
        subfigures=[{"label": s.label, "caption": s.caption} for s in fig.subfigures],
        parser=parsed.parser, parser_version=parsed.parser_version, **_save_image(session, store, fig),
    )
    before = _content(session, key)
    figure_id = upsert(session, FigureRow, values, ("figure_key",))
    caption_id = upsert(session, Caption, dict(figure_id=figure_id, kind="original", model="", prompt_hash="",
                                               params_hash="", text=fig.caption, status="accepted"), CAPTION_KEY)
    if before is not None and before != (values["pixel_sha256"], fig.caption):
        invalidate_derived(session, figure_id, caption_id)
    session.execute(delete(CitationContextRow).where(CitationContextRow.figure_id == figure_id,
                                                     CitationContextRow.position.notin_([c.position for c in fig.contexts])))
    for ctx in fig.contexts:
        upsert(session, CitationContextRow, dict(figure_id=figure_id, position=ctx.position, text=ctx.text,
                                                 section=ctx.section, mention=ctx.mention), ("figure_id", "position"))
    return figure_id


def _content(session: Session, figure_key: str) -> tuple[str | None, str | None] | None:
    """(pixel sha256, original caption) of a stored figure; None when it is new."""
    row = session.execute(select(FigureRow.id, FigureRow.pixel_sha256).where(FigureRow.figure_key == figure_key)).first()
    if row is None:
        return None
    text = session.execute(select(Caption.text).where(Caption.figure_id == row.id, Caption.kind == "original",
                                                      Caption.model == "")).scalar()
    return row.pixel_sha256, text


def invalidate_derived(session: Session, figure_id: int, original_caption_id: int) -> None:
    """Drop a changed figure's recaptions and metrics; queue recaption and score again."""
    session.execute(delete(Metric).where(Metric.figure_id == figure_id))
    session.execute(delete(Caption).where(Caption.figure_id == figure_id, Caption.kind == "recaption"))
    requeue(session, "recaption", "figure", [str(figure_id)])
    requeue(session, "score", "caption", [str(original_caption_id)])


def save_parsed(session: Session, store: ArtifactStore, paper: Paper, parsed: ParsedPaper) -> list[int]:
    """Upsert a parse's figures for ``paper``; return the figure ids, in order."""
    ids = [_save_figure(session, store, paper, parsed, fig) for fig in parsed.figures]
    stale = select(FigureRow.id).where(FigureRow.paper_id == paper.id, FigureRow.id.notin_(ids or [-1]))
    session.execute(update(FigureRow).where(FigureRow.duplicate_of_id.in_(stale)).values(duplicate_of_id=None))
    session.execute(delete(FigureRow).where(FigureRow.id.in_(stale)))
    if not paper.licence and parsed.licence:  # the harvest's licence wins; the source's fills a gap
        paper.licence, paper.licence_url = parsed.licence, parsed.licence_url
    paper.doi = paper.doi or parsed.doi
    paper.discipline = paper.discipline or parsed.discipline  # the harvest's (arXiv categories) wins
    paper.title = paper.title or parsed.title
    paper.abstract = paper.abstract or parsed.abstract
    paper.parser, paper.parser_version = parsed.parser, parsed.parser_version
    paper.schema_version = parsed.schema_version
    return ids
