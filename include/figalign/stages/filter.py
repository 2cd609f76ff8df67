"""The filter stage: decide for one figure whether it is a dataset sample, and say why not.

Per figure, in order: content rules (table, caption, image bytes; ``figalign.filters``),
then deduplication against lower-id figures still kept (``figalign.dedup``), then the
export policy (licence allow-list, retraction). The outcome is written on the figure:
``filter_reason`` (``None`` = kept) and ``duplicate_of_id``.

"First seen is kept" must hold whatever order items are processed in, so a figure links
only to a *lower* id that is still kept, and a figure that stops being kept (filtered, or
found to be a duplicate itself) releases the figures that linked to it: their link is
cleared and they go back to the queue to find their new original. No item is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import String, and_, cast, exists, select, update
from sqlalchemy.orm import Session

from figalign.config import Settings, load_settings
from figalign.dedup import image_hashes, phash_columns
from figalign.errors import TransientError
from figalign.filters import (
    DUPLICATE_REASON_PREFIX,
    FilterPolicy,
    ImageFacts,
    content_reason,
    policy_reason,
    summary,
)
from figalign.stages.base import Outcome, Stage
from figalign.storage import ArtifactStore
from figalign.store.duplicates import find_originals
from figalign.store.models import Artifact, Caption, FigureRow, Paper, StageRun
from figalign.store.papers import NO_IMAGE_PREFIX
from figalign.store.queue import Claimed, requeue
from figalign.store.upsert import upsert

log = logging.getLogger(__name__)
WRITTEN = ("filter_reason", "duplicate_of_id", "phash", "pixel_sha256", *phash_columns(None))


@dataclass(frozen=True)
class FilterInput:
    """A figure as ``load`` read it: where its image is and what the content rules need."""

    image_artifact_id: int | None
    image_uri: str | None
    kind: str
    caption: str | None
    phash: str | None
    sha: str | None


@dataclass(frozen=True)
class FilterFacts:
    """What ``compute`` found: the content rules' reason and facts, and the image's hashes."""

    image_artifact_id: int | None
    reason: str | None
    facts: ImageFacts | None
    phash: str | None
    sha: str | None


def kept_condition():
    """Figures that are (so far) dataset samples: the only ones a duplicate may link to."""
    return and_(FigureRow.filter_reason.is_(None), FigureRow.image_artifact_id.is_not(None))


class FilterStage(Stage):
    name = "filter"
    entity_type = "figure"

    def __init__(self, settings: Settings | None = None, policy: FilterPolicy | None = None):
        self.settings = settings or load_settings()
        self.policy = policy or FilterPolicy.from_env()
        self.store = ArtifactStore.from_settings(self.settings)

    def discover(self, session: Session) -> Iterable[str]:
        """Figures with no filter row yet (parse enqueues its own; this catches the rest).

        ``NOT EXISTS`` on the queue's natural key, not ``NOT IN``: Postgres plans a ``NOT IN``
        over more entity ids than fit in ``work_mem`` as a rescan per figure (quadratic:
        priced at 9e11 at 11 M figures), an anti-join as one hash pass (21 s there).
        """
        queued = exists().where(StageRun.stage == self.name, StageRun.entity_type == self.entity_type,
                                StageRun.entity_id == cast(FigureRow.id, String))
        rows = session.execute(select(FigureRow.id).where(~queued).order_by(FigureRow.id)).scalars()
        return [str(i) for i in rows]

    # -- dedup against the store ---------------------------------------------------------
    def _original_of(self, session: Session, fig: FigureRow, phash: str | None, sha: str | None) -> FigureRow | None:
        """The lowest-id kept figure this one duplicates, verified against the store.

        Candidates come from the store's own index (``store.duplicates``: nothing to load,
        whichever worker asks). Each is re-read under a row lock (Postgres ``FOR UPDATE``;
        SQLite's write lock is already held), so a worker that is filtering the original out right now
        either committed first (and we see it is no longer kept) or waits for us to
        commit and then finds our link, releasing this figure back to the queue.
        """
        lock = session.get_bind().dialect.name == "postgresql"
        found = find_originals(session, [(fig.id, phash, sha)], self.policy.phash_max_distance)[fig.id]
        for match in found:
            other = session.get(FigureRow, match.figure_id, with_for_update=lock, populate_existing=True)
            if other is not None and other.filter_reason is None and other.image_artifact_id is not None:
                return other  # else: filtered by another worker since the lookup read it
        return None

    # -- one item: load (read) → compute (image bytes, outside any transaction) → save ----
    def load(self, session: Session, item: Claimed) -> FilterInput | None:
        """What the content rules need, read in a short read transaction."""
        fig = session.get(FigureRow, int(item.entity_id))
        if fig is None:
            return None
        caption = session.execute(
            select(Caption.text).where(Caption.figure_id == fig.id, Caption.kind == "original")
            .order_by(Caption.id).limit(1)).scalar()
        artifact = session.get(Artifact, fig.image_artifact_id) if fig.image_artifact_id is not None else None
        return FilterInput(fig.image_artifact_id, artifact.storage_uri if artifact else None, fig.kind, caption,
                           fig.phash, fig.pixel_sha256)

    def compute(self, item: Claimed, loaded: FilterInput | None) -> FilterFacts | None:
        """Read the image (an object-store GET on S3) and apply the content rules, outside
        any transaction: the fenced write transaction holds row locks and must not wait on
        storage (tests/stages/test_store_promises.py)."""
        if loaded is None:
            return None
        data = self.store.read_bytes(loaded.image_uri) if loaded.image_uri else None
        reason, facts = content_reason(data, loaded.kind, loaded.caption, self.policy)
        phash, sha = loaded.phash, loaded.sha
        if facts is not None and (phash is None or sha is None):
            phash, sha = image_hashes(data)
        return FilterFacts(loaded.image_artifact_id, reason, facts, phash, sha)

    def save(self, session: Session, item: Claimed, computed: FilterFacts | None) -> Outcome:
        """Dedup against the store and write the decision, in the fenced transaction."""
        fig = session.get(FigureRow, int(item.entity_id))
        if fig is None or computed is None:
            return Outcome.skipped("figure no longer in the store (re-parsed away)")
        if fig.image_artifact_id != computed.image_artifact_id:
            raise TransientError(f"figure {fig.id}'s image changed while it was filtered; filter it again")
        reason, phash, sha = computed.reason, computed.phash, computed.sha
        if reason == "no-image" and (fig.filter_reason or "").startswith(NO_IMAGE_PREFIX):
            reason = fig.filter_reason  # the parser said why ("no-image:tikz-without-pdf"); keep it countable
        duplicate_of = None
        if reason is None:
            original = self._original_of(session, fig, phash, sha)
            if original is not None:
                duplicate_of, reason = original.id, f"{DUPLICATE_REASON_PREFIX}{original.figure_key}"
        if reason is None:
            paper = session.get(Paper, fig.paper_id)
            reason = policy_reason(paper.licence if paper else None, bool(paper and paper.retracted), self.policy)
        self._write(session, fig, reason, duplicate_of, phash, sha)
        released = self._release_dependants(session, fig.id) if reason else 0
        return Outcome("done", reason, {"kept": reason is None, "released": released, **summary(computed.facts)})

    def _write(self, session: Session, fig: FigureRow, reason: str | None, duplicate_of: int | None,
               phash: str | None, sha: str | None) -> None:
        """Upsert the decision, only when it changed (so ``updated_at`` means 'changed',
        which is what incremental exports select on)."""
        new = dict(filter_reason=reason, duplicate_of_id=duplicate_of, phash=phash, pixel_sha256=sha,
                   **phash_columns(phash))
        if all(getattr(fig, k) == v for k, v in new.items()):
            return
        values = dict(figure_key=fig.figure_key, paper_id=fig.paper_id, kind=fig.kind, parser=fig.parser,
                      parser_version=fig.parser_version, **new)
        upsert(session, FigureRow, values, ("figure_key",), update=WRITTEN)
        session.expire(fig)

    def _release_dependants(self, session: Session, figure_id: int) -> int:
        """Figures linked to one that is no longer kept go back to the queue.

        A targeted UPDATE of the two decision columns (upsert needs one row's full key and
        this touches a set of rows); the re-queued filter run writes their final state.
        """
        ids = list(session.execute(select(FigureRow.id).where(FigureRow.duplicate_of_id == figure_id)).scalars())
        if not ids:
            return 0
        session.execute(update(FigureRow).where(FigureRow.id.in_(ids))
                        .values(filter_reason=None, duplicate_of_id=None))
        requeue(session, self.name, self.entity_type, [str(i) for i in ids])
        log.info("filter: figure %s no longer kept; re-queued %d duplicates", figure_id, len(ids))
        return len(ids)
