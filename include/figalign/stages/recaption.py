"""Stage ``recaption``: ask a vision-language model for a better caption of each figure.

The work key is (figure, model, prompt hash, parameter hash), the natural key of the
``captions`` table. A figure is "to do" while no caption row — accepted or rejected —
exists under the current key; so a re-run skips what is done, ``force`` redoes it, and a
new prompt version (new hash) queues every figure again while keeping the old rows.

The stage runs through the one contract (``stages.base.run_batch``) as a concurrent stage:
``load`` reads each figure's input, ``compute_async`` builds its request (in a worker
thread: image encoding is CPU work that releases the GIL) and sends it under the shared
client's semaphore, and each answer is saved — fenced, one transaction per item — as
soon as it is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, exists, select
from sqlalchemy.orm import Session

from figalign.config import Settings
from figalign.errors import PermanentError, TransientError
from figalign.recaption.client import CompletionResult, VllmClient, VllmConfig
from figalign.recaption.prompt import (
    ContextIn,
    PromptOptions,
    RecaptionInput,
    build_request,
    load_template,
    request_image_url,
    request_prompt_text,
)
from figalign.recaption.grounding import VERSION as GROUNDING_VERSION, GroundingOptions
from figalign.recaption.validate import validate
from figalign.stages.base import BatchSummary, Outcome, Stage, run_batch
from figalign.storage import ArtifactStore
from figalign.store.db import session_scope
from figalign.store.models import Artifact, Caption, CitationContextRow, FigureRow, Metric, Paper, StageRun
from figalign.store.queue import (
    Claimed,
    RunContext,
    enqueue,
    requeue,
    stage_states,
)
from figalign.store.text import clean
from figalign.store.upsert import upsert

log = logging.getLogger(__name__)

STAGE = "recaption"
KIND = "recaption"
NO_ENDPOINT = "no endpoint configured"
SHORTER_CONTEXT = 0.25  # share of the context/abstract budgets kept after a context-length 400
_CHUNK = 500  # ids per IN (...) clause


class RecaptionStage(Stage):
    """The recaption stage for one (model, prompt version, options) combination."""

    name = STAGE
    entity_type = "figure"
    lease_seconds = 300  # renewed while the batch runs (stages.leases)

    concurrent = True  # one HTTP request per figure: the batch's requests are sent together

    def __init__(self, settings: Settings, *, options: PromptOptions | None = None, model: str | None = None,
                 force: bool = False, client_overrides: dict[str, Any] | None = None):
        self.settings = settings
        self.client_overrides = dict(client_overrides or {})
        self._client: VllmClient | None = None
        self._builds: asyncio.Semaphore | None = None
        self.options = options or PromptOptions()
        self.model = model or settings.vllm_model
        self.force = force
        self.prompt_hash = load_template(self.options.prompt_version).sha256
        self.params_hash = self.options.params_hash()
        self.grounding = GroundingOptions.from_env()

    @property
    def key_hash(self) -> str:
        """One hash of (model, prompt, params), kept in ``stage_runs.input_hash``."""
        return hashlib.sha256(f"{self.model}\n{self.prompt_hash}\n{self.params_hash}".encode()).hexdigest()

    def check_ready(self) -> str | None:
        """Without an endpoint nothing can be produced: every item is skipped, never faked."""
        if not self.settings.vllm_base_url or not self.model:
            return NO_ENDPOINT
        return None

    def _eligible(self):
        """Figures kept by filtering and dedup that have an image (a query, in id order)."""
        return (select(FigureRow.id)
                .where(FigureRow.filter_reason.is_(None), FigureRow.duplicate_of_id.is_(None),
                       FigureRow.image_artifact_id.is_not(None))
                .order_by(FigureRow.id))

    def eligible(self, session: Session) -> list[int]:
        return list(session.execute(self._eligible()).scalars())

    def discover(self, session: Session) -> list[str]:
        """Eligible figures with no caption (accepted or rejected) under the current key.

        An anti-join in the server (``NOT EXISTS`` on captions' key index): reading every
        eligible figure and every caption into Python sets costs memory and minutes per plan
        at millions of figures.
        """
        done = exists().where(Caption.figure_id == FigureRow.id, Caption.kind == KIND, Caption.model == self.model,
                              Caption.prompt_hash == self.prompt_hash, Caption.params_hash == self.params_hash)
        return [str(fid) for fid in session.execute(self._eligible().where(~done)).scalars()]

    def existing_caption(self, session: Session, figure_id: int) -> int | None:
        return session.execute(
            select(Caption.id).where(Caption.figure_id == figure_id, Caption.kind == KIND, Caption.model == self.model,
                                     Caption.prompt_hash == self.prompt_hash,
                                     Caption.params_hash == self.params_hash)).scalar()

    def prepare_queue(self, session: Session, *, limit: int | None = None) -> int:
        """Enqueue new work and requeue finished rows whose key changed; return rows made pending."""
        todo = ([str(i) for i in self.eligible(session)] if self.force else self.discover(session))
        if limit is not None:
            todo = todo[:limit]
        new = enqueue(session, self.name, self.entity_type, todo, max_attempts=self.max_attempts,
                      input_hash=self.key_hash)
        stale = list(todo) if self.force else self._stale(session, todo)
        again = requeue(session, self.name, self.entity_type, stale)
        for entity_id in stale:
            upsert(session, StageRun, dict(stage=self.name, entity_type=self.entity_type, entity_id=entity_id,
                                           input_hash=self.key_hash),
                   key=("stage", "entity_type", "entity_id"), update=("input_hash",))
        return new + again

    def _stale(self, session: Session, todo: list[str]) -> list[str]:
        """Finished rows of figures still to do: done (key changed), skipped (now ready), failed on an old key."""
        ready = self.check_ready() is None
        return [entity_id for entity_id, status, input_hash
                in stage_states(session, self.name, self.entity_type, todo, _CHUNK)
                if status == "done" or (status == "skipped" and ready)
                or (status == "failed" and input_hash != self.key_hash)]

    def load(self, session: Session, item: Claimed) -> "Work":
        try:
            figure_id = int(item.entity_id)
        except ValueError:
            raise PermanentError(f"bad figure id {item.entity_id!r}") from None
        existing = None if self.force else self.existing_caption(session, figure_id)
        if existing is not None:
            return Work(item, outcome=Outcome.done(caption_id=existing, existing=True))
        return Work(item, inp=load_input(session, self.settings, figure_id))

    @contextlib.asynccontextmanager
    async def async_resources(self) -> AsyncIterator[None]:
        """One client for the batch, and a bound on request builds running at once (twice the
        requests in flight: a whole batch building together starves the event loop and
        delays the first requests)."""
        config = VllmConfig.from_settings(self.settings, model=self.model, **self.client_overrides)
        async with VllmClient(config) as client:
            self._client, self._builds = client, asyncio.Semaphore(max(8, 2 * config.max_in_flight))
            try:
                yield
            finally:
                self._client = self._builds = None

    async def compute_async(self, item: Claimed, work: "Work") -> "Work":
        """Build the figure's request and send it; errors are raised, classified by the contract."""
        if work.outcome is None:
            assert self._client is not None and self._builds is not None, "outside async_resources()"
            async with self._builds:
                request, shorten = await asyncio.to_thread(build_pair, work.inp, self.model, self.options)
            work.result = await self._client.complete(request, shorten=shorten)
        return work

    def save(self, session: Session, item: Claimed, work: "Work") -> Outcome:
        return work.outcome or store_result(session, self, int(item.entity_id), work.result)


@dataclass
class Work:
    """A claimed item on its way through the batch."""

    item: Claimed
    inp: RecaptionInput | None = None
    outcome: Outcome | None = None  # known at load (done before); else the answer's, at save
    result: CompletionResult | None = None


def load_input(session: Session, settings: Settings, figure_id: int) -> RecaptionInput:
    """Gather title, abstract, label, original caption, contexts and image bytes of a figure."""
    figure = session.get(FigureRow, figure_id)
    if figure is None:
        raise PermanentError(f"figure {figure_id} is not in the store")
    paper = session.get(Paper, figure.paper_id)
    artifact = session.get(Artifact, figure.image_artifact_id) if figure.image_artifact_id else None
    if artifact is None:
        raise PermanentError(f"figure {figure_id} has no image artifact")
    caption = session.execute(
        select(Caption.text).where(Caption.figure_id == figure_id, Caption.kind == "original")
        .order_by(Caption.id)).scalars().first()
    contexts = session.execute(
        select(CitationContextRow).where(CitationContextRow.figure_id == figure_id)
        .order_by(CitationContextRow.position)).scalars().all()
    return RecaptionInput(
        figure_id=figure_id,
        title=(paper.title if paper else "") or "",
        abstract=(paper.abstract if paper else "") or "",
        label=figure.label or "",
        caption=caption or "",
        image=_read_image(settings, artifact.storage_uri),
        contexts=[ContextIn(c.text, c.position, c.mention) for c in contexts],
    )


def _read_image(settings: Settings, uri: str) -> bytes:
    try:
        return ArtifactStore.from_settings(settings).read_bytes(uri)
    except FileNotFoundError as exc:
        raise PermanentError(f"image file missing: {uri}") from exc
    except OSError as exc:
        raise TransientError(f"image unreadable: {uri}: {exc}") from exc


def build_pair(inp: RecaptionInput, model: str, options: PromptOptions) -> tuple[dict[str, Any], Any]:
    """The request and a function building its shorter-context variant (reusing the image)."""
    request = build_request(inp, model, options)

    def shorten() -> dict[str, Any]:
        return build_request(inp, model, options, image_url=request_image_url(request), shrink=SHORTER_CONTEXT)

    return request, shorten


def store_result(session: Session, stage: RecaptionStage, figure_id: int, result: CompletionResult) -> Outcome:
    """Validate an answer and upsert it as an accepted or rejected caption (raw text kept)."""
    verdict = validate(result.text, result.finish_reason, request_prompt_text(result.request), stage.grounding)
    params = {**stage.options.params(), "prompt_version": stage.options.prompt_version,
              "context_shortened": result.shortened}
    caption_id = upsert(session, Caption, dict(
        figure_id=figure_id, kind=KIND, model=stage.model, prompt_hash=stage.prompt_hash,
        params_hash=stage.params_hash, text=clean(verdict.text, "recaption")[0] if verdict.accepted else None,
        status="accepted" if verdict.accepted else "rejected", reject_reason=verdict.reason,
        raw_text=clean(result.text)[0], params=params, prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens, latency_ms=round(result.latency_ms, 1),
        endpoint=result.endpoint, request_id=result.request_id,
    ), key=("figure_id", "kind", "model", "prompt_hash", "params_hash"))
    status = "accepted" if verdict.accepted else "rejected"
    if verdict.accepted:
        store_flags(session, figure_id, caption_id, verdict)
    reason = None if verdict.accepted else f"rejected: {verdict.reason}"
    return Outcome("done", reason, {"caption_id": caption_id, "caption_status": status,
                                    "attempts": result.attempts, "context_shortened": result.shortened,
                                    "flags": sorted(verdict.flags)})


def store_flags(session: Session, figure_id: int, caption_id: int, verdict) -> None:
    """The answer's validation flags as metric rows ``flag:<name>`` on the recaption (value:
    how many offending tokens, ``details``: the tokens), so the export's quality policy and
    the explorer read them like any score; a re-validated caption's stale flags go."""
    flags = dict(verdict.flags)
    if verdict.thought:
        flags["think-stripped"] = []
    wanted = {f"flag:{name}" for name in flags}
    stale = session.execute(select(Metric).where(Metric.caption_id == caption_id, Metric.model == GROUNDING_VERSION,
                                                 Metric.metric.startswith("flag:"))).scalars()
    for row in stale:
        if row.metric not in wanted:
            session.delete(row)
    for name, tokens in sorted(flags.items()):
        upsert(session, Metric, dict(figure_id=figure_id, caption_id=caption_id, caption_kind=KIND,
                                     metric=f"flag:{name}", model=GROUNDING_VERSION, model_version=GROUNDING_VERSION,
                                     value=float(len(tokens) or 1), details={"tokens": tokens[:50]}),
               key=("caption_id", "metric", "model"))


def run_recaption_batch(engine: Engine, settings: Settings, size: int = 64, ctx: RunContext | None = None,
                        force: bool = False, *, options: PromptOptions | None = None, model: str | None = None,
                        discover: bool = True, client_overrides: dict[str, Any] | None = None) -> BatchSummary:
    """Claim up to ``size`` figures and recaption them concurrently (``stages.base.run_batch``).

    ``client_overrides`` are VllmConfig fields (timeout_s, max_in_flight, max_retries …).
    A missing endpoint records every claimed item ``skipped: no endpoint configured``.
    """
    stage = RecaptionStage(settings, options=options, model=model, force=force, client_overrides=client_overrides)
    enqueued = 0
    if discover:
        with session_scope(engine) as session:
            enqueued = stage.prepare_queue(session, limit=size if force else None)
    summary = run_batch(stage, engine, size=size, ctx=ctx, discover=False)
    summary.enqueued = enqueued
    return summary


def drain_recaption(engine: Engine, settings: Settings, *, limit: int | None = None, batch_size: int = 64,
                    ctx: RunContext | None = None, force: bool = False, options: PromptOptions | None = None,
                    model: str | None = None, client_overrides: dict[str, Any] | None = None) -> BatchSummary:
    """Queue once, then run batches until nothing is claimable or ``limit`` figures were claimed."""
    stage = RecaptionStage(settings, options=options, model=model, force=force)
    total = BatchSummary(STAGE)
    with session_scope(engine) as session:
        total.enqueued = stage.prepare_queue(session, limit=limit)
    remaining = limit
    while remaining is None or remaining > 0:
        size = batch_size if remaining is None else min(batch_size, remaining)
        batch = run_recaption_batch(engine, settings, size, ctx, force, options=options, model=model,
                                    discover=False, client_overrides=client_overrides)
        total.add(batch)
        if remaining is not None:
            remaining -= batch.claimed
        if batch.claimed == 0:
            break
    return total


def pending_ids(engine: Engine, settings: Settings, *, limit: int, options: PromptOptions | None = None,
                model: str | None = None) -> list[int]:
    """Figures the next run would recaption, without claiming anything (for --dry-run)."""
    stage = RecaptionStage(settings, options=options, model=model)
    with session_scope(engine) as session:
        return [int(i) for i in stage.discover(session)[:limit]]


def dry_run_requests(engine: Engine, settings: Settings, figure_ids: Iterable[int], *,
                     options: PromptOptions | None = None, model: str | None = None) -> list[dict[str, Any]]:
    """The exact request bodies a run would send for these figures (nothing is sent or written)."""
    stage = RecaptionStage(settings, options=options, model=model)
    out = []
    with session_scope(engine) as session:
        for figure_id in figure_ids:
            inp = load_input(session, settings, figure_id)
            out.append(build_request(inp, stage.model or "<model not configured>", stage.options))
    return out
