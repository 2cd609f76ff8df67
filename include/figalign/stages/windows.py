"""Which days a harvest lists, and when a day counts as harvested for good.

The rule, the same for scheduled runs, backfills, UI triggers and ``figalign harvest``:

* A run asks for whole days ``[start, end]`` (inclusive, as OAI-PMH ``from``/``until``).
  From an Airflow run they come from its data interval (``window_from_interval``): the
  harvest DAGs use ``CronDataIntervalTimetable``, whose daily run covers the day that just
  ended; a zero-length interval (a trigger timetable) means the last complete day before it.
* Each day is a window with its own cursor. A window is **closed** (cursor ``done``, never
  listed again unless forced) only once it is over in the provider's datestamp time zone
  plus a safety lag (``WindowRule.lag``). A window not over yet is listed in full but left
  ``open``; the next run lists it again.
* Every run also re-lists the ``overlap_days`` days before ``start`` whatever their state,
  so records a provider stamps with a day after that day was listed are still collected.
  Papers are upserts on their natural key, so re-listing never duplicates anything.

Why these defaults: OAI-PMH datestamps are UTC by the protocol (arXiv, PMC); the bioRxiv
API's dates are the server's day in New York. arXiv rebuilds its OAI-PMH data once a day
after the 20:00 US-Eastern announcement (00:00–01:00 UTC), and PMC and bioRxiv also
publish in daily batches, so a 6 h lag puts "closed" after the batch that can still stamp
records with the day that just ended; the 2-day overlap collects what is stamped later
still (a re-list of one day costs one or two requests).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from figalign.errors import ConfigError

PROVIDER_TZ = {"arxiv": "UTC", "pmc": "UTC", "biorxiv": "America/New_York", "medrxiv": "America/New_York"}


@dataclass(frozen=True)
class WindowRule:
    """How far back each run re-lists, how long after its end a day is closed, in which zone."""

    overlap_days: int = 2
    lag: dt.timedelta = dt.timedelta(hours=6)
    tz: str = "UTC"

    @classmethod
    def for_source(cls, source: str, env: Mapping[str, str] | None = None) -> "WindowRule":
        """Defaults per source; ``FIGALIGN_HARVEST_OVERLAP_DAYS`` / ``FIGALIGN_HARVEST_LAG_HOURS`` override."""
        env = os.environ if env is None else env
        try:
            overlap = int(env.get("FIGALIGN_HARVEST_OVERLAP_DAYS", cls.overlap_days))
            lag_hours = float(env.get("FIGALIGN_HARVEST_LAG_HOURS", cls.lag.total_seconds() / 3600))
        except ValueError as exc:
            raise ConfigError(f"FIGALIGN_HARVEST_OVERLAP_DAYS / _LAG_HOURS must be numbers: {exc}") from exc
        if overlap < 0 or lag_hours < 0:
            raise ConfigError("FIGALIGN_HARVEST_OVERLAP_DAYS and FIGALIGN_HARVEST_LAG_HOURS must not be negative")
        return cls(overlap_days=overlap, lag=dt.timedelta(hours=lag_hours), tz=PROVIDER_TZ.get(source, "UTC"))

    def closes_at(self, day: dt.date) -> dt.datetime:
        """The UTC moment after which ``day`` can no longer gain records (end of day + lag)."""
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=ZoneInfo(self.tz))
        return (end + self.lag).astimezone(dt.UTC)

    def is_closed(self, day: dt.date, now: dt.datetime | None = None) -> bool:
        return (now or dt.datetime.now(dt.UTC)) >= self.closes_at(day)


def window_from_interval(start: dt.datetime, end: dt.datetime) -> tuple[dt.date, dt.date]:
    """An Airflow data interval as inclusive days: ``[start, end)`` → ``start.date() .. (end-ε).date()``.

    A zero-length interval (``CronTriggerTimetable``, or a manual run of one) says only when
    the run happened, so it means the last day that was complete by then. Naive times are UTC.
    """
    start, end = (t.astimezone(dt.UTC) if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in (start, end))
    if end <= start:
        day = end.date() - dt.timedelta(days=1)
        return day, day
    return start.date(), max(start.date(), (end - dt.timedelta(microseconds=1)).date())


@dataclass(frozen=True)
class DayWindow:
    """One day to list; ``relist`` days are listed again even when already closed."""

    day: dt.date
    relist: bool


def plan_days(start: dt.date, end: dt.date, rule: WindowRule) -> list[DayWindow]:
    """The overlap days before ``start`` (re-listed), then every day of ``[start, end]``."""
    if end < start:
        raise ConfigError(f"window ends ({end}) before it starts ({start})")
    first = start - dt.timedelta(days=rule.overlap_days)
    return [DayWindow(first + dt.timedelta(days=i), relist=first + dt.timedelta(days=i) < start)
            for i in range((end - first).days + 1)]
