"""CLIP gain per figure: its best recaption's CLIP score minus its original caption's.

The paper's headline is this comparison (+18.21 % mean CLIP score after recaptioning).
It is stored as a metric row of its own — ``<metric>_gain`` on the best recaption's
caption, kind ``recaption``, one row per figure and CLIP series — so the explorer sorts
and range-filters figures by it through the same index as any score (computing it per
request took ~6 s at a million figures), and the report and dataset card summarise it
like any other metric. "Best" is the highest-scoring recaption: a figure recaptioned
under several prompts or models is ranked by what recaptioning can achieve for it; the
row's ``details`` name the recaption and both scores.

The score stage rewrites a figure's gain rows whenever it writes one of its scores;
``invalidate_derived`` removes them with the figure's other metrics when its content
changes; ``backfill_gains`` fills them in for stores scored before they were stored.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from figalign.store.models import Metric
from figalign.store.upsert import upsert

SUFFIX = "_gain"
BASE_METRICS = ("clip_cosine", "clip_cosine_sentmean")  # higher is better for both
GAIN_METRICS = tuple(m + SUFFIX for m in BASE_METRICS)


def gain_name(metric: str) -> str:
    return metric + SUFFIX


def wanted_gains(rows: Iterable[tuple]) -> dict[tuple[int, str, str], dict]:
    """The gain rows ``(figure, metric, model) → row`` implied by score rows
    ``(figure_id, metric, model, caption_kind, caption_id, value)``."""
    originals: dict[tuple, tuple[int, float]] = {}
    best: dict[tuple, tuple[int, float]] = {}
    for fid, metric, model, kind, caption_id, value in rows:
        key = (fid, metric, model)
        if kind == "original":
            originals[key] = (caption_id, value)
        elif kind == "recaption" and (key not in best or (value, -caption_id) > (best[key][1], -best[key][0])):
            best[key] = (caption_id, value)  # ties: the earliest recaption
    out = {}
    for key, (rec_id, rec) in best.items():
        if key in originals:
            orig_id, orig = originals[key]
            fid, metric, model = key
            out[(fid, gain_name(metric), model)] = dict(
                figure_id=fid, caption_id=rec_id, caption_kind="recaption", metric=gain_name(metric), model=model,
                value=rec - orig, details={"original": orig, "recaption": rec, "original_caption_id": orig_id})
    return out


def update_gains(session: Session, figure_ids: Iterable[int]) -> int:
    """Make these figures' gain rows match their stored scores; return how many they have."""
    ids = sorted(set(figure_ids))
    if not ids:
        return 0
    scores = session.execute(select(Metric.figure_id, Metric.metric, Metric.model, Metric.caption_kind,
                                    Metric.caption_id, Metric.value)
                             .where(Metric.figure_id.in_(ids), Metric.metric.in_(BASE_METRICS))).all()
    wanted = wanted_gains(scores)
    have = session.execute(select(Metric.id, Metric.figure_id, Metric.metric, Metric.model, Metric.caption_id)
                           .where(Metric.figure_id.in_(ids), Metric.metric.in_(GAIN_METRICS))).all()
    stale = [row.id for row in have
             if wanted.get((row.figure_id, row.metric, row.model), {}).get("caption_id") != row.caption_id]
    if stale:  # the best recaption changed, or a score is gone: the row's key changes too
        session.execute(delete(Metric).where(Metric.id.in_(stale)))
    for row in wanted.values():
        upsert(session, Metric, row, key=("caption_id", "metric", "model"))
    return len(wanted)


def backfill_gains(session: Session, *, chunk: int = 1000) -> int:
    """Gain rows for every scored figure (idempotent); returns how many there are."""
    figures = session.execute(select(Metric.figure_id).distinct()
                              .where(Metric.caption_kind == "recaption", Metric.metric.in_(BASE_METRICS))
                              .order_by(Metric.figure_id)).scalars().all()
    return sum(update_gains(session, figures[i:i + chunk]) for i in range(0, len(figures), chunk))
