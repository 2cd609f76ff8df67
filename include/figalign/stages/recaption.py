"""Stage ``recaption``: ask a vision-language model for a better caption of each figure.

The work key is (figure, model, prompt hash, parameter hash), the natural key of the
``captions`` table. A figure is "to do" while no caption row — accepted or rejected —
exists under the current key; so a re-run skips what is done, ``force`` redoes it, and a
new prompt version (new hash) queues every figure again while keeping the old rows.

Unlike the generic ``run_batch``, a claimed batch is processed concurrently: requests
for all claimed figures are built (in worker threads: image encoding is CPU work that
releases the GIL) and sent together under the client's semaphore, and each outcome is
recorded as soon as it is in (``Recorder``, one transaction per item, with ``finish()``:
done, failed or skipped).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from figalign.config import Settings
from figalign.errors import ConfigError, PermanentError, TransientError
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
from figalign.stages.base import LOST, BatchSummary, Outcome, Stage
from figalign.stages.leases import LeaseKeeper
from figalign.storage import ArtifactStore
from figalign.store.db import session_scope
from figalign.store.models import Artifact, Caption, CitationContextRow, FigureRow, Metric, Paper, StageRun
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

    def __init__(self, settings: Settings, *, options: PromptOptions | None = None, model: str | None = None,
                 force: bool = False):
        self.settings = settings
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

    def eligible(self, session: Session) -> list[int]:
        """Figures kept by filtering and dedup that have an image."""
        query = (select(FigureRow.id)
                 .where(FigureRow.filter_reason.is_(None), FigureRow.duplicate_of_id.is_(None),
                        FigureRow.image_artifact_id.is_not(None))
                 .order_by(FigureRow.id))
        return list(session.execute(query).scalars())

    def discover(self, session: Session) -> list[str]:
        """Eligible figures with no caption (accepted or rejected) under the current key."""
        done = set(session.execute(
            select(Caption.figure_id).where(Caption.kind == KIND, Caption.model == self.model,
                                            Caption.prompt_hash == self.prompt_hash,
                                            Caption.params_hash == self.params_hash)).scalars())
        return [str(fid) for fid in self.eligible(session) if fid not in done]

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

    # The generic runner's path (one figure at a time); the batch runner is concurrent.
    def load(self, session: Session, item: Claimed) -> "Work":
        figure_id = int(item.entity_id)
        existing = None if self.force else self.existing_caption(session, figure_id)
        if existing is not None:
            return Work(item, outcome=Outcome.done(caption_id=existing, existing=True))
        return Work(item, inp=load_input(session, self.settings, figure_id))

    def compute(self, item: Claimed, work: "Work") -> "Work":
        if work.outcome is None:
            config = VllmConfig.from_settings(self.settings, model=self.model)
            asyncio.run(_ask_all(config, [work], self.model, self.options))
            if work.error is not None:
                raise work.error
        return work

    def save(self, session: Session, item: Claimed, work: "Work") -> Outcome:
        return work.outcome or store_result(session, self, int(item.entity_id), work.result)


@dataclass
class Work:
    """A claimed item on its way through the batch."""

    item: Claimed
    inp: RecaptionInput | None = None
    outcome: Outcome | None = None
    error: BaseException | None = None
    retry: bool = False
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
        return ArtifactStore(settings.data_dir).read_bytes(uri)
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


async def _ask(client: VllmClient, work: Work, model: str, options: PromptOptions,
               builds: asyncio.Semaphore) -> None:
    """Build and send one request, keeping the result or the classified error on ``work``.

    Builds (image decode, downscale, base64) run in threads, at most ``builds`` at once: a
    whole batch building together starves the event loop and delays the first requests.
    """
    try:
        async with builds:
            request, shorten = await asyncio.to_thread(build_pair, work.inp, model, options)
        work.result = await client.complete(request, shorten=shorten)
    except TransientError as exc:
        work.error, work.retry, work.outcome = exc, True, Outcome("failed", f"transient: {exc}")
    except (PermanentError, ConfigError) as exc:
        work.error, work.outcome = exc, Outcome("failed", f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # an unexpected bug in one item must not sink the batch
        log.exception("recaption: figure %s raised", work.item.entity_id)
        work.error, work.outcome = exc, Outcome("failed", f"unexpected {type(exc).__name__}: {exc}")


async def ask_all(client: VllmClient, works: list[Work], model: str, options: PromptOptions,
                  on_done: Callable[[Work], None] | None = None) -> None:
    """Send every work item's request through ``client`` (whose semaphore bounds requests in
    flight), building at most twice as many requests as can be in flight at once.
    ``on_done`` gets each item as soon as its answer (or error) is in."""
    builds = asyncio.Semaphore(max(8, 2 * client.config.max_in_flight))

    async def one(work: Work) -> None:
        await _ask(client, work, model, options, builds)
        if on_done is not None:
            on_done(work)

    await asyncio.gather(*(one(w) for w in works))


async def _ask_all(config: VllmConfig, works: list[Work], model: str, options: PromptOptions,
                   on_done: Callable[[Work], None] | None = None) -> None:
    async with VllmClient(config) as client:
        await ask_all(client, works, model, options, on_done)


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


def _load_all(engine: Engine, stage: RecaptionStage, items: list[Claimed]) -> list[Work]:
    """Read inputs; items already done under this key (and not forced) end as done at once."""
    works = []
    with session_scope(engine) as session:
        for item in items:
            work = Work(item)
            try:
                figure_id = int(item.entity_id)
                existing = None if stage.force else stage.existing_caption(session, figure_id)
                if existing is not None:
                    work.outcome = Outcome.done(caption_id=existing, existing=True)
                else:
                    work.inp = load_input(session, stage.settings, figure_id)
            except ValueError as exc:
                work.error, work.outcome = exc, Outcome("failed", f"bad figure id {item.entity_id!r}")
            except TransientError as exc:
                work.error, work.retry, work.outcome = exc, True, Outcome("failed", f"transient: {exc}")
            except PermanentError as exc:
                work.error, work.outcome = exc, Outcome("failed", f"{type(exc).__name__}: {exc}")
            works.append(work)
    return works


def _record(engine: Engine, stage: RecaptionStage, work: Work) -> tuple[str, str | None]:
    """Store the caption (if any) and finish the stage run, in one fenced transaction per item."""
    try:
        with session_scope(engine) as session:
            fence(session, work.item)
            outcome = work.outcome
            if outcome is None and work.result is not None:
                outcome = store_result(session, stage, int(work.item.entity_id), work.result)
            if outcome is None:  # unreachable by construction; recorded rather than lost
                outcome = Outcome("failed", "no outcome recorded")
            final = finish(session, work.item, outcome.status, error=work.error,
                           reason=outcome.reason, output=outcome.output, retry=work.retry)
        return final, outcome.reason
    except LeaseLost as exc:
        log.warning("recaption: figure %s: %s; nothing written", work.item.entity_id, exc)
        return LOST, "lease taken over by another run; nothing written"


class Recorder:
    """Records finished items from a thread of its own, each as soon as it is finished.

    A batch's answers arrive over minutes; writing each one when it lands (instead of all
    after the last) means a worker killed mid-batch loses only the requests still in flight,
    and the event loop never waits on the store. One thread, so writes never contend with
    each other. If the store fails, the rest stay claimed (their leases expire and they are
    retried) and ``close`` raises: trouble with the store is the batch's, not an item's.
    """

    def __init__(self, engine: Engine, stage: RecaptionStage, summary: BatchSummary,
                 keeper: LeaseKeeper | None = None):
        self.engine, self.stage, self.summary, self.keeper = engine, stage, summary, keeper
        self._queue: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="recaption-recorder", daemon=True)
        self._thread.start()

    def put(self, work: Work) -> None:
        self._queue.put(work)

    def _run(self) -> None:
        while (work := self._queue.get()) is not None:
            if self._error is not None:
                continue  # the store failed: leave the rest claimed
            try:
                self.summary.count(*_record(self.engine, self.stage, work))
                if self.keeper is not None:
                    self.keeper.done(work.item)
            except Exception as exc:  # reported by close(), in the batch's thread
                log.exception("recaption: recording figure %s failed", work.item.entity_id)
                self._error = exc

    def close(self, *, raise_error: bool = True) -> None:
        """Wait until everything put so far is recorded; raise the store's error if any
        (not when the batch is already failing with an error of its own)."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and raise_error:
            raise self._error


def run_recaption_batch(engine: Engine, settings: Settings, size: int = 64, ctx: RunContext | None = None,
                        force: bool = False, *, options: PromptOptions | None = None, model: str | None = None,
                        discover: bool = True, client_overrides: dict[str, Any] | None = None) -> BatchSummary:
    """Claim up to ``size`` figures and recaption them concurrently; every item gets ``finish()``.

    ``client_overrides`` are VllmConfig fields (timeout_s, max_in_flight, max_retries …).
    A missing endpoint records every claimed item ``skipped: no endpoint configured``.
    """
    ctx = ctx or RunContext.local()
    stage = RecaptionStage(settings, options=options, model=model, force=force)
    summary = BatchSummary(stage.name)
    started = time.monotonic()
    if discover:
        with session_scope(engine) as session:
            summary.enqueued = stage.prepare_queue(session, limit=size if force else None)
    with session_scope(engine) as session:
        items = claim_batch(session, stage.name, size, lease_seconds=stage.lease_seconds, ctx=ctx)
    summary.claimed = len(items)
    with LeaseKeeper(engine, items, stage.lease_seconds) as keeper:
        _run_claimed(engine, settings, stage, items, summary, keeper, client_overrides)
    summary.seconds = time.monotonic() - started
    log.info("stage %s: %s", stage.name, summary.as_dict())
    return summary


def _run_claimed(engine: Engine, settings: Settings, stage: RecaptionStage, items: list[Claimed],
                 summary: BatchSummary, keeper: LeaseKeeper, client_overrides: dict[str, Any] | None) -> None:
    """Load, ask and record a claimed batch; each answer is recorded as it arrives."""
    not_ready = stage.check_ready()
    recorder = Recorder(engine, stage, summary, keeper)
    try:
        if not_ready:
            works = [Work(item, outcome=Outcome.skipped(not_ready)) for item in items]
        else:
            works = _load_all(engine, stage, items)
        todo = [w for w in works if w.outcome is None]
        for work in works:
            if work.outcome is not None:  # skipped, done before, or failed to load: recorded now
                recorder.put(work)
        if todo:
            config = VllmConfig.from_settings(settings, model=stage.model, **(client_overrides or {}))
            asyncio.run(_ask_all(config, todo, stage.model, stage.options, recorder.put))
    except BaseException:
        recorder.close(raise_error=False)
        raise
    recorder.close()


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
