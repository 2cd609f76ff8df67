"""Stage ``score``: SciBERT pseudo-perplexity and CLIP score of every accepted caption.

Entities are captions (kind ``original`` or ``recaption``, status ``accepted``) of figures
kept by filtering. The work key is the set of wanted (metric, model) pairs; a
(caption, metric, model) row that exists is never recomputed, so re-runs do nothing and a
new model adds rows beside the old ones.

Per caption the stage writes up to three ``metrics`` rows:
``pppl`` (value: PPPL), ``clip_cosine`` (cosine, text truncated to the context) and
``clip_cosine_sentmean`` (cosine, mean over sentence chunks); CLIP rows carry CLIPScore,
the text strategy and token counts in ``details``.

A claimed batch is scored in one model pass per metric (``run_score_batch``): all texts
go through the PPPL scorer together, all (image, text) pairs through CLIP with each image
encoded once. When a model cannot be loaded (no weights offline) every item is recorded
``skipped`` with the loader's message, never scored with made-up numbers, and is queued
again on the next run so it gets scored once the weights are there.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, exists, select, union
from sqlalchemy.orm import Session

from figalign.config import Settings
from figalign.errors import BadInputError, PermanentError
from figalign.metrics import ModelUnavailableError
from figalign.metrics.clipscore import clip_model_id
from figalign.stages.base import LOST, BatchSummary, Outcome, Stage, record
from figalign.storage import ArtifactStore
from figalign.stages.leases import LeaseKeeper
from figalign.store.db import session_scope
from figalign.store.models import Artifact, Caption, FigureRow, Metric, StageRun
from figalign.metrics.gains import update_gains
from figalign.store.queue import (
    Claimed,
    LeaseLost,
    RunContext,
    claim_batch,
    enqueue,
    fence,
    finish,
    requeue,
    stage_states,
)
from figalign.store.upsert import upsert

log = logging.getLogger(__name__)

STAGE = "score"
KINDS = ("original", "recaption")
METRIC_PPPL = "pppl"
CLIP_METRICS = {"truncate": "clip_cosine", "sentence-mean": "clip_cosine_sentmean"}
UNAVAILABLE = "unavailable"  # input_hash of items skipped for want of a model: retried next run
_CHUNK = 500


@dataclass
class ScoreOptions:
    """What to score and how: metric families, device, dtype, batch bounds."""

    metrics: tuple[str, ...] = ("pppl", "clip")
    device: str = "auto"
    dtype: str = "float32"
    pppl_max_batch: int = 64
    clip_batch: int = 32
    clip_strategies: tuple[str, ...] = ("truncate", "sentence-mean")


@dataclass
class _Item:
    claimed: Claimed
    caption_id: int | None = None
    figure_id: int | None = None
    kind: str = ""
    text: str = ""
    image: str | None = None
    existing: set = field(default_factory=set)
    problem: str | None = None


@dataclass
class _Result:
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    error: BaseException | None = None


_SCORERS: dict[tuple, Any] = {}


def get_scorer(family: str, settings: Settings, options: ScoreOptions):
    """A loaded scorer, cached per process (loading SciBERT/ViT-L takes seconds)."""
    key = (family, settings.pppl_model if family == "pppl" else (settings.clip_model, settings.clip_pretrained,
                                                                  settings.clip_image_fit, settings.clip_activation),
           options.device, options.dtype)
    if key not in _SCORERS:
        if family == "pppl":
            from figalign.metrics.pppl import PseudoPerplexity

            _SCORERS[key] = PseudoPerplexity.load(settings.pppl_model, device=options.device, dtype=options.dtype,
                                                  max_batch=options.pppl_max_batch)
        else:
            from figalign.metrics.clipscore import ClipScorer

            _SCORERS[key] = ClipScorer.load(settings.clip_model, settings.clip_pretrained, device=options.device,
                                            dtype=options.dtype, batch_size=options.clip_batch,
                                            image_fit=settings.clip_image_fit,
                                            activation=settings.clip_activation)
    return _SCORERS[key]


class ScoreStage(Stage):
    """The score stage for one configuration of models and metric families."""

    name = STAGE
    entity_type = "caption"
    lease_seconds = 300  # renewed while the batch runs (stages.leases)

    def __init__(self, settings: Settings, options: ScoreOptions | None = None):
        self.settings = settings
        self.options = options or ScoreOptions()
        unknown = set(self.options.metrics) - {"pppl", "clip"}
        if unknown:
            raise ValueError(f"unknown metric families {sorted(unknown)}")

    # -- what is wanted -------------------------------------------------------------------
    def wanted(self) -> dict[str, list[tuple[str, str]]]:
        """(metric, model) pairs per family under the current settings."""
        out: dict[str, list[tuple[str, str]]] = {}
        if "pppl" in self.options.metrics:
            out["pppl"] = [(METRIC_PPPL, self.settings.pppl_model)]
        if "clip" in self.options.metrics:
            model = clip_model_id(self.settings.clip_model, self.settings.clip_pretrained,
                                  self.settings.clip_image_fit)
            out["clip"] = [(CLIP_METRICS[s], model) for s in self.options.clip_strategies]
        return out

    def wanted_keys(self) -> set[tuple[str, str]]:
        return {k for keys in self.wanted().values() for k in keys}

    @property
    def key_hash(self) -> str:
        text = "\n".join(sorted(f"{m}|{model}" for m, model in self.wanted_keys()))
        return hashlib.sha256(text.encode()).hexdigest()

    # -- queue ---------------------------------------------------------------------------
    def _eligible(self):
        """Accepted original captions and recaptions, with text, of figures kept by filtering."""
        return (select(Caption.id).join(FigureRow, FigureRow.id == Caption.figure_id)
                .where(Caption.kind.in_(KINDS), Caption.status == "accepted", Caption.text.is_not(None),
                       FigureRow.filter_reason.is_(None)))

    def discover(self, session: Session) -> list[str]:
        """Eligible captions that lack at least one wanted (metric, model) row.

        One anti-join per wanted pair (``NOT EXISTS`` on metrics' unique key), their union
        in the server: every metric row read into Python (several per caption) costs
        memory and minutes per plan at millions of captions.
        """
        lacking = [self._eligible().where(~exists().where(Metric.caption_id == Caption.id, Metric.metric == metric,
                                                          Metric.model == model))
                   for metric, model in sorted(self.wanted_keys())]
        if not lacking:
            return []
        ids = union(*lacking).subquery()
        return [str(c) for c in session.execute(select(ids.c.id).order_by(ids.c.id)).scalars()]

    def prepare_queue(self, session: Session, *, limit: int | None = None) -> int:
        """Enqueue new work; requeue finished rows whose wanted set changed or that lacked a model."""
        todo = self.discover(session)
        if limit is not None:
            todo = todo[:limit]
        new = enqueue(session, self.name, self.entity_type, todo, max_attempts=self.max_attempts,
                      input_hash=self.key_hash)
        stale = self._stale(session, todo)
        again = requeue(session, self.name, self.entity_type, stale)
        for entity_id in stale:
            _set_input_hash(session, entity_id, self.key_hash)
        return new + again

    def _stale(self, session: Session, todo: list[str]) -> list[str]:
        rows = stage_states(session, self.name, self.entity_type, todo, _CHUNK)
        return [e for e, status, h in rows if status in ("done", "skipped", "failed") and h != self.key_hash]

    # -- the generic one-item path ---------------------------------------------------------
    def process(self, session: Session, item: Claimed) -> Outcome:
        """One caption (the generic runner's path); ``run_score_batch`` batches instead."""
        loaded = load_items(session, [item], self.wanted_keys())
        result = compute(self, loaded)[item.run_id]
        outcome = write_result(session, self, loaded[0], result)
        if result.error is not None:
            raise result.error
        return outcome


# -- batch path -----------------------------------------------------------------------------
def load_items(session: Session, claimed: list[Claimed], wanted: set) -> list[_Item]:
    """Caption text, image path and existing metric keys of each claimed caption."""
    items = []
    for c in claimed:
        item = _Item(claimed=c)
        caption = session.get(Caption, int(c.entity_id)) if c.entity_id.isdigit() else None
        if caption is None or caption.status != "accepted" or caption.kind not in KINDS:
            item.problem = "caption missing or not an accepted original/recaption"
            items.append(item)
            continue
        item.caption_id, item.figure_id, item.kind, item.text = caption.id, caption.figure_id, caption.kind, caption.text or ""
        figure = session.get(FigureRow, caption.figure_id)
        if figure is not None and figure.image_artifact_id is not None:
            artifact = session.get(Artifact, figure.image_artifact_id)
            item.image = artifact.storage_uri if artifact is not None else None
        item.existing = set(session.execute(
            select(Metric.metric, Metric.model).where(Metric.caption_id == caption.id)).all()) & wanted
        items.append(item)
    return items


def compute(stage: ScoreStage, items: list[_Item]) -> dict[int, _Result]:
    """Metric rows for every item: one batched pass per metric family."""
    results = {it.claimed.run_id: _Result() for it in items}
    for family, keys in stage.wanted().items():
        todo = [it for it in items if it.problem is None and not set(keys) <= it.existing]
        if not todo:
            continue
        try:
            scorer = get_scorer(family, stage.settings, stage.options)
        except ModelUnavailableError as exc:
            for it in todo:
                results[it.claimed.run_id].unavailable.append(str(exc))
            continue
        if family == "pppl":
            _each_or_batch(_pppl_rows, scorer, todo, results)
        else:
            store = ArtifactStore.from_settings(stage.settings)
            _each_or_batch(lambda s, t, r: _clip_rows(s, t, r, stage.options.clip_strategies, store),
                           scorer, todo, results)
    return results


def _each_or_batch(fn, scorer, todo: list[_Item], results: dict[int, _Result]) -> None:
    """Score the batch in one pass; if the pass itself raises, isolate the culprit item by item."""
    try:
        fn(scorer, todo, results)
        return
    except Exception:  # noqa: BLE001 - any model error: retry each item alone so one bad item fails alone
        log.exception("score: batched pass failed; scoring %d items one by one", len(todo))
    for it in todo:
        try:
            fn(scorer, [it], results)
        except Exception as exc:  # noqa: BLE001 - recorded as this item's failure
            results[it.claimed.run_id].error = exc if isinstance(exc, PermanentError) else PermanentError(
                f"{type(exc).__name__}: {exc}")


def _pppl_rows(scorer, todo: list[_Item], results: dict[int, _Result]) -> None:
    from figalign.metrics.pppl import METHOD, WINDOW_RULE

    todo = [it for it in todo if (METRIC_PPPL, scorer.model_id) not in it.existing]
    scores = scorer.score([it.text for it in todo])
    for it, res in zip(todo, scores):
        if res is None:
            results[it.claimed.run_id].notes.append("pppl: caption has no wordpieces")
            continue
        results[it.claimed.run_id].rows.append(dict(
            metric=METRIC_PPPL, model=scorer.model_id, model_version=scorer.model_version, value=res.pppl,
            details={"log_pppl": res.log_pppl, "n_tokens": res.n_tokens, "n_windows": res.n_windows,
                     "window": scorer.window, "window_rule": WINDOW_RULE, "method": METHOD, "dtype": scorer.dtype}))


def _image_source(store: ArtifactStore, uri: str):
    """A local path as is; an object-store image as its bytes (read with the store's options)."""
    import io

    from figalign.location import is_url

    if not is_url(uri):
        return uri
    try:
        return io.BytesIO(store.read_bytes(uri))
    except FileNotFoundError as exc:
        raise BadInputError(f"cannot read image {uri}: {exc}") from exc


def _clip_rows(scorer, todo: list[_Item], results: dict[int, _Result], strategies, store: ArtifactStore) -> None:
    from figalign.metrics.clipscore import _open_image

    images: dict[str, Any] = {}
    ready = []
    for it in todo:
        if not it.image:
            results[it.claimed.run_id].notes.append("clip: figure has no image")
            continue
        if it.image not in images:
            try:
                images[it.image] = _open_image(_image_source(store, it.image))
            except BadInputError as exc:
                images[it.image] = exc
        if isinstance(images[it.image], BaseException):
            results[it.claimed.run_id].error = images[it.image]
            continue
        ready.append(it)
    for strategy in strategies:
        metric = CLIP_METRICS[strategy]
        batch = [it for it in ready if (metric, scorer.model_id) not in it.existing]
        if not batch:
            continue
        scores = scorer.score([images[it.image] for it in batch], [it.text for it in batch], strategy)
        for it, res in zip(batch, scores):
            results[it.claimed.run_id].rows.append(dict(
                metric=metric, model=scorer.model_id, model_version=scorer.model_version, value=res.cosine,
                details={"clipscore": res.clipscore, "text_strategy": res.strategy, "text_tokens": res.text_tokens,
                         "fits_context": res.fits_context, "n_chunks": res.n_chunks, "dtype": scorer.dtype,
                         "image_fit": getattr(scorer, "image_fit", "centre-crop")}))


def write_result(session: Session, stage: ScoreStage, item: _Item, result: _Result) -> Outcome:
    """Upsert the item's metric rows; say what happened (the caller records it)."""
    if item.problem:
        return Outcome.skipped(item.problem)
    for row in result.rows:
        upsert(session, Metric, dict(row, caption_id=item.caption_id, figure_id=item.figure_id,
                                     caption_kind=item.kind), key=("caption_id", "metric", "model"))
    if result.rows:
        update_gains(session, [item.figure_id])  # best recaption's CLIP minus the original's
    output = {"written": len(result.rows), "existing": len(item.existing)}
    if result.unavailable:
        _set_input_hash(session, item.claimed.entity_id, UNAVAILABLE)
    reason = "; ".join(result.unavailable + result.notes) or None
    if not result.rows and not item.existing:
        return Outcome.skipped(reason or "nothing to score", **output)
    return Outcome("done", reason, output)


def _set_input_hash(session: Session, entity_id: str, value: str) -> None:
    upsert(session, StageRun, dict(stage=STAGE, entity_type="caption", entity_id=str(entity_id), input_hash=value),
           key=("stage", "entity_type", "entity_id"), update=("input_hash",))


def run_score_batch(engine: Engine, settings: Settings, size: int = 32, ctx: RunContext | None = None, *,
                    options: ScoreOptions | None = None, discover: bool = True,
                    limit: int | None = None) -> BatchSummary:
    """Claim up to ``size`` captions, score them in one pass per metric, record each outcome.

    Same contract as ``stages.base.run_batch``: every claimed item ends with ``finish()``
    as done, skipped (with the reason) or failed (with the error); only trouble with the
    batch itself (store unreachable) raises.
    """
    stage = ScoreStage(settings, options)
    ctx = ctx or RunContext.local()
    summary = BatchSummary(stage.name)
    started = time.monotonic()
    if discover:
        with session_scope(engine) as session:
            summary.enqueued = stage.prepare_queue(session, limit=limit)
    with session_scope(engine) as session:
        claimed = claim_batch(session, stage.name, size, lease_seconds=stage.lease_seconds, ctx=ctx)
    summary.claimed = len(claimed)
    if claimed:
        with LeaseKeeper(engine, claimed, stage.lease_seconds) as keeper:
            with session_scope(engine) as session:
                items = load_items(session, claimed, stage.wanted_keys())
            results = compute(stage, items)
            for item in items:
                summary.count(*_record(engine, stage, item, results[item.claimed.run_id]))
                keeper.done(item.claimed)
    summary.seconds = time.monotonic() - started
    log.info("stage %s: %s", stage.name, summary.as_dict())
    return summary


def _record(engine: Engine, stage: ScoreStage, item: _Item, result: _Result):
    """Write one item's rows and its outcome in one fenced transaction.

    A metric error after some rows were computed (PPPL before a bad image) still writes
    those rows, with the item failed; a write that itself fails permanently rolls back and
    records only the failure.
    """
    try:
        try:
            with session_scope(engine) as session:
                fence(session, item.claimed)
                outcome = write_result(session, stage, item, result)
                if result.error is not None:
                    outcome = Outcome("failed", f"{type(result.error).__name__}: {result.error}")
                final = finish(session, item.claimed, outcome.status, error=result.error,
                               reason=outcome.reason, output=outcome.output)
            return final, outcome.reason
        except PermanentError as exc:
            return record(engine, item.claimed, Outcome("failed", f"{type(exc).__name__}: {exc}"), error=exc)
    except LeaseLost as exc:
        log.warning("score: caption %s: %s; nothing written", item.claimed.entity_id, exc)
        return LOST, "lease taken over by another run; nothing written"


def drain_score(engine: Engine, settings: Settings, *, size: int = 32, limit: int | None = None,
                options: ScoreOptions | None = None, ctx: RunContext | None = None) -> BatchSummary:
    """Queue work once, then score batches until nothing is left or ``limit`` items were claimed."""
    total = BatchSummary(STAGE)
    first = True
    while limit is None or total.claimed < limit:
        take = size if limit is None else min(size, limit - total.claimed)
        batch = run_score_batch(engine, settings, take, ctx, options=options, discover=first, limit=limit)
        first = False
        total.add(batch)
        if batch.claimed == 0:
            break
    return total
