"""Which selected samples a release keeps, and why each other one was left out.

``iter_samples`` yields what the store may export (kept by the filter stage, licence and
retraction allowed). A release can be narrower: S1-MMAlign ships only recaptioned pairs,
and the quality policy (``figalign.export.quality``) drops pairs or their recaptions by
score. ``Selection`` runs those rules over the stream, writes one line per dropped sample
to ``dropped.jsonl`` (figure id, key, reason) and counts the reasons for the manifest and
card, so a release says exactly what it left out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from figalign.export.common import Sample
from figalign.export.manifest import HashingWriter, ShardInfo

DROPPED = "dropped.jsonl"
NO_RECAPTION = "no-recaption"
NOT_IN_RELEASE = "licence-not-in-release:"

Outcome = tuple["str | None", Sample, "str | None"]
Rule = Callable[[Sample], Outcome]
"""A rule returns (reason to drop or None, the sample — possibly changed —, what changed or None)."""


def require_recaption(sample: Sample) -> Outcome:
    """Keep recaptioned samples; one whose recaption a quality rule removed says which rule."""
    if sample.meta["recaption"]:
        return None, sample, None
    removed = [n for n in sample.notes if n.startswith("recaption-removed:")]
    return (removed[-1] if removed else NO_RECAPTION), sample, None


def licence_rule(allowed: frozenset[str]) -> Rule:
    """Keep only papers under ``allowed`` licences (an export's ``--licences``)."""

    def rule(sample: Sample) -> Outcome:
        lic = sample.meta["licence"] or "unknown"
        return (None if lic in allowed else NOT_IN_RELEASE + lic), sample, None

    return rule


class Selection:
    """Apply ``rules`` in order; the first reason drops the sample."""

    def __init__(self, out_dir: Path, rules: Iterable[Rule] = ()):
        self.out_dir = Path(out_dir)
        self.rules = list(rules)
        self.dropped: Counter[str] = Counter()
        self.changed: Counter[str] = Counter()
        self._log: HashingWriter | None = None

    def apply(self, samples: Iterable[Sample]) -> Iterator[Sample]:
        if not self.rules:
            yield from samples
            return
        for sample in samples:
            kept = self._one(sample)
            if kept is not None:
                yield kept

    def _one(self, sample: Sample) -> Sample | None:
        for rule in self.rules:
            reason, sample, change = rule(sample)
            if reason is not None:
                self._drop(sample, reason)
                return None
            if change is not None:
                self.changed[change] += 1
        return sample

    def _drop(self, sample: Sample, reason: str) -> None:
        self.dropped[reason] += 1
        if self._log is None:
            self._log = HashingWriter(self.out_dir / DROPPED)
        line = {"figure_id": sample.meta["figure_id"], "key": sample.key, "reason": reason}
        self._log.write((json.dumps(line, ensure_ascii=False) + "\n").encode())

    def close(self) -> ShardInfo | None:
        """Finish ``dropped.jsonl`` (none when nothing was dropped; an old one is removed)."""
        if self._log is None:
            (self.out_dir / DROPPED).unlink(missing_ok=True)
            return None
        sha, size = self._log.close()
        self._log = None
        return ShardInfo(DROPPED, sha, sum(self.dropped.values()), size)

    def abort(self) -> None:
        if self._log is not None:
            self._log.abort()
            self._log = None

    def summary(self) -> dict[str, dict[str, int]]:
        """For the manifest: reasons of dropped samples, and of changes to kept ones."""
        return {"dropped": dict(sorted(self.dropped.items())), "changed": dict(sorted(self.changed.items()))}
