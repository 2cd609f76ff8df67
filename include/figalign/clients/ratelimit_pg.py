"""The per-host rate limit shared by every machine: one row per host in Postgres.

``HostRateLimiter`` (``clients/http.py``) keeps its state in ``flock``ed files, which only
the processes of one machine see. On a cluster whose store is Postgres, workers on several
machines would each keep their own files and together ask arXiv N times as often. Here the
state is a row of ``rate_limit_slots`` per host:

- ``next_at``: the earliest time the host may be asked again;
- ``holder`` / ``held_until``: who is asking it now, and until when that claim stands (a
  worker that dies mid-request frees the host when ``held_until`` passes).

Taking a turn is one atomic ``UPDATE … WHERE next_at <= now AND (free or expired) RETURNING``:
Postgres takes the row lock, re-checks the condition on the newest row version, and lets
exactly one of two racing workers through; the loser's ``UPDATE`` matches nothing and it
waits. The turn also moves ``next_at`` to ``now + interval``, so starts stay ``interval``
apart even when a lapsed claim lets a second worker in. Giving the turn back books
``next_at`` from the moment the request *finished* (plus any ``Retry-After``), as the file
limiter does. All times are the database's clock (``clock_timestamp()``): machines whose
clocks disagree still agree on the row. No transaction stays open while waiting or during
the request: each statement commits at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping

from sqlalchemy import Engine, text

log = logging.getLogger(__name__)

HOLD_S = 900.0  # how long a claim stands without being given back: longer than any one request

_ENSURE = text("INSERT INTO rate_limit_slots (host, next_at) VALUES (:host, clock_timestamp()) "
               "ON CONFLICT (host) DO NOTHING")
_TAKE = text("""
UPDATE rate_limit_slots
   SET holder = :holder,
       held_until = clock_timestamp() + make_interval(secs => :hold),
       next_at = clock_timestamp() + make_interval(secs => :interval)
 WHERE host = :host
   AND next_at <= clock_timestamp()
   AND (holder IS NULL OR held_until < clock_timestamp())
RETURNING holder
""")
_WAIT = text("""
SELECT greatest(extract(epoch FROM next_at - clock_timestamp()),
                CASE WHEN holder IS NOT NULL AND held_until >= clock_timestamp() THEN :poll ELSE 0 END)
  FROM rate_limit_slots WHERE host = :host
""")
_GIVE_BACK = text("""
UPDATE rate_limit_slots
   SET holder = NULL, held_until = NULL,
       next_at = greatest(next_at, clock_timestamp() + make_interval(secs => :hold_for))
 WHERE host = :host AND holder = :holder
""")


class PostgresRateLimiter:
    """At most one request per ``interval`` seconds per host, across machines (Postgres)."""

    def __init__(self, engine: Engine, interval: float, per_host: Mapping[str, float] | None = None,
                 sleep: Callable[[float], None] = time.sleep, poll_s: float = 0.05):
        from figalign.clients.http import _host_key

        self.engine = engine
        self.interval = interval
        self.per_host = {_host_key(f"//{k}"): v for k, v in (per_host or {}).items()}
        self._sleep = sleep
        self._poll = poll_s

    def interval_for(self, url: str) -> float:
        from figalign.clients.http import _host_key

        return self.per_host.get(_host_key(url), self.interval)

    @contextlib.contextmanager
    def slot(self, url: str) -> Iterator:
        """Hold the host for one request (see the module docstring); yields a ``_Slot``."""
        from figalign.clients.http import _host_key, _Slot

        key = _host_key(url)
        booked = _Slot(self.interval_for(url))
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        booked.waited = self._take(key, holder, booked.hold_for)
        try:
            yield booked
        finally:
            with self.engine.begin() as conn:
                conn.execute(_GIVE_BACK, {"host": key, "holder": holder, "hold_for": booked.hold_for})

    def _take(self, key: str, holder: str, interval: float) -> float:
        """Wait for the host's turn and take it; return the seconds waited."""
        start = time.monotonic()
        with self.engine.begin() as conn:
            conn.execute(_ENSURE, {"host": key})
        while True:
            with self.engine.begin() as conn:
                if conn.execute(_TAKE, {"host": key, "holder": holder, "hold": HOLD_S,
                                        "interval": interval}).first() is not None:
                    return time.monotonic() - start
                wait = conn.execute(_WAIT, {"host": key, "poll": self._poll}).scalar_one()
            # a turn just freed but not yet due: sleep until due; held: poll at a short pace
            self._sleep(min(max(float(wait), 0.001), max(interval, self._poll)))
