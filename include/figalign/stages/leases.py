"""Keeping a batch's leases alive while it is worked on.

Leases are short (``Stage.lease_seconds``, 120 s by default) so that the items of a worker
that died come back within minutes, not at the end of a long timeout. A live worker must
therefore renew them: ``LeaseKeeper`` is a small thread that, every quarter lease, extends
the leases of the batch's items not yet finished, each in one short transaction of its
own (never inside a stage's write transaction). An item whose lease was taken over in the
meantime (requeued, or reclaimed after a stall) is marked lost, so the batch skips it
instead of doing work that fencing would refuse to record anyway.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

from figalign.store.db import session_scope
from figalign.store.queue import Claimed, renew

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews the leases of ``items`` until each is ``done()`` or the keeper is closed."""

    def __init__(self, engine: Engine, items: list[Claimed], lease_seconds: int, *, every: float | None = None):
        self.engine = engine
        self.lease_seconds = lease_seconds
        self.every = every if every is not None else max(1.0, lease_seconds / 4)
        self._open = {item.run_id: item for item in items}
        self._lost: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def __enter__(self) -> "LeaseKeeper":
        if self._open:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def done(self, item: Claimed) -> None:
        """The item has its outcome (or was given up): stop renewing it."""
        with self._lock:
            self._open.pop(item.run_id, None)

    def lost(self, item: Claimed) -> bool:
        """Whether renewing found the item's lease taken over."""
        with self._lock:
            return item.run_id in self._lost

    def renew_now(self) -> None:
        """One renewal round (the thread's loop body; callable directly in tests)."""
        with self._lock:
            items = list(self._open.values())
        if not items:
            return
        with session_scope(self.engine) as session:
            held = renew(session, items, self.lease_seconds)
        with self._lock:
            for item in items:
                if item.run_id not in held and item.run_id in self._open:
                    self._lost.add(item.run_id)
                    self._open.pop(item.run_id)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.renew_now()
            except Exception:  # the store hiccupped: the next round tries again
                log.exception("lease renewal failed; retrying in %.0f s", self.every)
