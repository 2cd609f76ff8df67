"""Label every kept figure's type with the configured CLIP model (``figalign score --figure-types``).

A figure-level pass beside the score stage: it walks kept figures (not filtered, not
duplicates, with an image and an original caption) that have no ``figtype:*`` row under
the current (CLIP model, prompt version), classifies them in batches and writes one metric
row per figure on its original caption (``metrics.figtype``). Re-running does nothing for
labelled figures; a new prompt file version or CLIP model labels them again beside the old
rows. Without CLIP weights nothing is written and the reason is returned, as the score
stage does. Per-figure problems (an unreadable image) are counted and named, never raised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine, delete, select

from figalign.config import Settings
from figalign.errors import BadInputError
from figalign.metrics import ModelUnavailableError
from figalign.metrics.figtype import DEFAULT_PROMPTS, METRIC_PREFIX, FigureTyper, TypePrompts
from figalign.storage import ArtifactStore
from figalign.store.db import session_scope
from figalign.store.models import Artifact, Caption, FigureRow, Metric
from figalign.store.upsert import upsert

log = logging.getLogger(__name__)


@dataclass
class TypeSummary:
    labelled: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    skipped: str | None = None
    labels: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"labelled": self.labelled, "failed": self.failed, "skipped": self.skipped, "labels": self.labels}


def _todo(session, model_id: str, limit: int) -> list[tuple[int, int, str]]:
    """(figure id, original caption id, image path) of kept figures with no label under ``model_id``."""
    done = select(Metric.figure_id).where(Metric.model == model_id, Metric.metric.startswith(METRIC_PREFIX))
    query = (select(FigureRow.id, Caption.id, Artifact.storage_uri)
             .join(Artifact, Artifact.id == FigureRow.image_artifact_id)
             .join(Caption, (Caption.figure_id == FigureRow.id) & (Caption.kind == "original"))
             .where(FigureRow.filter_reason.is_(None), FigureRow.duplicate_of_id.is_(None),
                    FigureRow.id.notin_(done))
             .order_by(FigureRow.id).limit(limit))
    return [tuple(r) for r in session.execute(query)]


def _write(session, typer: FigureTyper, figure_id: int, caption_id: int, result) -> None:
    session.execute(delete(Metric).where(Metric.caption_id == caption_id, Metric.model == typer.model_id,
                                         Metric.metric.startswith(METRIC_PREFIX)))
    upsert(session, Metric, dict(figure_id=figure_id, caption_id=caption_id, caption_kind="original",
                                 metric=METRIC_PREFIX + result.label, model=typer.model_id,
                                 model_version=typer.prompts.sha256, value=float(result.score),
                                 details=typer.details(result)), key=("caption_id", "metric", "model"))


def _image(store: ArtifactStore, uri: str):
    """The figure as an RGB PIL image, read through the artifact store (local or s3://)."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        data = store.read_bytes(uri)
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise BadInputError(f"cannot read image {uri}: {exc}") from exc


def label_figures(engine: Engine, settings: Settings, *, batch: int = 32, limit: int | None = None,
                  prompts: str = DEFAULT_PROMPTS, typer: FigureTyper | None = None) -> TypeSummary:
    """Label unlabelled kept figures, ``batch`` at a time, up to ``limit``."""
    summary = TypeSummary()
    store = ArtifactStore.from_settings(settings)
    if typer is None:
        try:
            from figalign.stages.score import ScoreOptions, get_scorer

            typer = FigureTyper(get_scorer("clip", settings, ScoreOptions()), TypePrompts.load(prompts))
        except ModelUnavailableError as exc:
            summary.skipped = str(exc)
            return summary
    while limit is None or summary.labelled + len(summary.failed) < limit:
        size = batch if limit is None else min(batch, limit - summary.labelled - len(summary.failed))
        with session_scope(engine) as session:
            todo = [t for t in _todo(session, typer.model_id, size + len(summary.failed))
                    if str(t[0]) not in summary.failed][:size]
        if not todo:
            break
        images, ok = [], []
        for fid, cid, uri in todo:
            try:
                images.append(_image(store, uri))
                ok.append((fid, cid))
            except BadInputError as exc:
                summary.failed[str(fid)] = str(exc)
        results = typer.classify(images) if images else []
        with session_scope(engine) as session:
            for (fid, cid), result in zip(ok, results):
                _write(session, typer, fid, cid, result)
                summary.labels[result.label] = summary.labels.get(result.label, 0) + 1
        summary.labelled += len(results)
    return summary
