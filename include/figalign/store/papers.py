"""Writing a ParsedPaper into the store: figures, images, contexts and original captions.

The parse stage calls ``save_parsed``; every row is upserted on its natural key, so
re-parsing a paper updates rows in place. Figures that a newer parse no longer finds are
removed with their contexts and captions, so the store always mirrors the latest parse.

A figure whose image pixels or original caption changed (a new arXiv version, a fixed
parser) keeps its row, but what was derived from the old content is dropped — its model
recaptions and all its metrics — and the recaption and score stages are queued again for
it, so no recaption or score ever describes content the figure no longer has. Figures
that filtering had marked duplicates of a removed or changed figure are filtered again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from figalign.dedup import phash_columns
from figalign.records import Figure, ParsedPaper
from figalign.storage import ArtifactStore, StoredObject, record_artifact
from figalign.store.models import Caption, CitationContextRow, FigureRow, Metric, Paper
from figalign.store.queue import requeue
from figalign.store.text import clean_text
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


# A figure the parser could not image is recorded as filtered with the parser's reason, so
# "no image in the source" (tikz-without-pdf, no-graphics-file-in-source …) is countable
# apart from "we failed"; the filter stage keeps this reason (stages/filter.py).
NO_IMAGE_PREFIX = "no-image:"


@dataclass(frozen=True)
class StoredImage:
    """A figure (or panel) image already in the artifact store, with its pixel hash."""

    obj: StoredObject
    pixel_sha256: str | None


def store_images(store: ArtifactStore, parsed: ParsedPaper) -> dict[str, StoredImage]:
    """Put every figure and panel image into the artifact store; keyed by ``image_key``.

    Done before the write transaction (the store may be remote: no I/O under a lock), and
    harmless if that transaction never happens: objects are content-addressed.
    """
    out = {}
    for fig in parsed.figures:
        if fig.image is not None and Path(fig.image.path).exists():
            obj = store.put_file(fig.image.path, media_type=fig.image.media_type)
            out[image_key(fig)] = StoredImage(obj, pixel_sha256(fig.image.path))
        for i, sub in enumerate(fig.subfigures):
            if sub.image is not None and Path(sub.image.path).exists():
                out[image_key(fig, i)] = StoredImage(store.put_file(sub.image.path, media_type=sub.image.media_type),
                                                     None)
    return out


def image_key(fig: Figure, panel: int | None = None) -> str:
    return fig.id if panel is None else f"{fig.id}#panel{panel}"


def _save_image(session: Session, fig: Figure, image: StoredImage | None) -> dict:
    if image is None:
        out = dict(image_artifact_id=None, width=None, height=None, phash=None, pixel_sha256=None, image_origin=None,
                   **phash_columns(None))
        if fig.no_image_reason:
            out["filter_reason"] = NO_IMAGE_PREFIX + fig.no_image_reason
        return out
    return dict(image_artifact_id=record_artifact(session, image.obj), width=fig.image.width,
                height=fig.image.height, phash=fig.image.phash, pixel_sha256=image.pixel_sha256,
                image_origin=fig.image_origin, **phash_columns(fig.image.phash))


def _panel(session: Session, sub, image: StoredImage | None) -> dict:
    """A sub-figure as stored in ``figures.subfigures``: label, caption and its own image."""
    stored = None
    if image is not None:
        stored = dict(artifact_id=record_artifact(session, image.obj), width=sub.image.width,
                      height=sub.image.height, sha256=sub.image.sha256, phash=sub.image.phash,
                      media_type=sub.image.media_type)
    return {"label": sub.label, "caption": sub.caption, "image": stored}


def missing_image_reasons(session: Session) -> dict[str, int]:
    """How many figures have no image, by the reason the parser gave ("unknown" if none)."""
    from sqlalchemy import func

    rows = session.execute(select(FigureRow.filter_reason, func.count()).where(
        FigureRow.image_artifact_id.is_(None), FigureRow.kind == "figure").group_by(FigureRow.filter_reason)).all()
    out: dict[str, int] = {}
    for reason, n in rows:
        key = reason[len(NO_IMAGE_PREFIX):] if reason and reason.startswith(NO_IMAGE_PREFIX) else "unknown"
        out[key] = out.get(key, 0) + n
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def image_origins(session: Session) -> dict[str, int]:
    """How many figures with an image got it from each origin (``pdf-crop``, ``composite`` …)."""
    from sqlalchemy import func

    rows = session.execute(select(FigureRow.image_origin, func.count()).where(
        FigureRow.image_artifact_id.is_not(None), FigureRow.kind == "figure").group_by(FigureRow.image_origin)).all()
    return dict(sorted(((origin or "unknown", n) for origin, n in rows), key=lambda kv: -kv[1]))


def _local_id(parsed: ParsedPaper, fig: Figure) -> str:
    """The figure's id within its paper (``fig1``, ``tab#2``): its id without the paper id."""
    head = f"{parsed.paper_id}:"
    return fig.id[len(head):] if fig.id.startswith(head) else fig.id.rsplit(":", 1)[-1]


def _save_figure(session: Session, paper: Paper, parsed: ParsedPaper, fig: Figure,
                 images: dict[str, StoredImage], changed: list[int]) -> int:
    key = f"{paper.source}:{paper.external_id}{paper.version and 'v' + paper.version.lstrip('v')}:{_local_id(parsed, fig)}"
    values = dict(
        figure_key=key, paper_id=paper.id, label=fig.label, number=fig.number, kind=fig.kind,
        ordinal=fig.ordinal, page=fig.page, bbox=fig.bbox,
        subfigures=[_panel(session, sub, images.get(image_key(fig, i))) for i, sub in enumerate(fig.subfigures)],
        parser=parsed.parser, parser_version=parsed.parser_version, **_save_image(session, fig, images.get(image_key(fig))),
    )
    before = _content(session, key)
    figure_id = upsert(session, FigureRow, values, ("figure_key",))
    caption_id = upsert(session, Caption, dict(figure_id=figure_id, kind="original", model="", prompt_hash="",
                                               params_hash="", text=fig.caption, status="accepted"), CAPTION_KEY)
    if before is not None and before != (values["pixel_sha256"], fig.caption):
        invalidate_derived(session, figure_id, caption_id)
        changed.append(figure_id)
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


def release_duplicates_of(session: Session, figure_ids: list[int]) -> int:
    """Figures marked duplicates of these (removed or changed) figures are filtered again.

    Their decision named an original that no longer exists or no longer shows the same
    image, so it is cleared and the filter stage re-queued for them: they find a new
    original, or are kept themselves.
    """
    if not figure_ids:
        return 0
    ids = list(session.execute(select(FigureRow.id).where(FigureRow.duplicate_of_id.in_(figure_ids))).scalars())
    if ids:
        session.execute(update(FigureRow).where(FigureRow.id.in_(ids))
                        .values(duplicate_of_id=None, filter_reason=None))
        requeue(session, "filter", "figure", [str(i) for i in ids])
    return len(ids)


def clean_parsed(parsed: ParsedPaper) -> None:
    """Make every text of a parsed paper safe for the store (``store.text``), in place;
    a text cut at its length limit adds a warning to the paper's parse warnings."""
    w = parsed.warnings
    parsed.title = clean_text(parsed.title, "title", w)
    parsed.abstract = clean_text(parsed.abstract, "abstract", w)
    for fig in parsed.figures:
        where = fig.label or fig.id
        fig.caption = clean_text(fig.caption, "caption", w, f"caption of {where}") or ""
        fig.label = clean_text(fig.label, "label", w)
        fig.number = clean_text(fig.number, "number", w)
        for sub in fig.subfigures:
            sub.caption = clean_text(sub.caption, "caption", w, f"sub-caption of {where}") or ""
            sub.label = clean_text(sub.label, "label", w)
        for ctx in fig.contexts:
            ctx.text = clean_text(ctx.text, "context", w, f"a citation context of {where}") or ""
            ctx.section = clean_text(ctx.section, "section", w)
            ctx.mention = clean_text(ctx.mention, "mention", w)


def save_parsed(session: Session, paper: Paper, parsed: ParsedPaper,
                images: dict[str, StoredImage] | None = None) -> list[int]:
    """Upsert a parse's figures for ``paper``; return the figure ids, in order.

    ``images`` are the figures' images, already in the artifact store (``store_images``).
    """
    clean_parsed(parsed)
    changed: list[int] = []
    ids = [_save_figure(session, paper, parsed, fig, images or {}, changed) for fig in parsed.figures]
    stale = list(session.execute(select(FigureRow.id).where(FigureRow.paper_id == paper.id,
                                                            FigureRow.id.notin_(ids or [-1]))).scalars())
    release_duplicates_of(session, stale + changed)
    if stale:
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
