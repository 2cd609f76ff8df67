"""Licences: one short id per licence, and the two decisions made from it.

Sources spell licences many ways (arXiv gives URLs, PMC gives codes such as "CC BY-NC").
Everything downstream compares short ids, so they are normalised once, at harvest. Two
decisions use them, each configurable per source: what we may *process* (text mining;
every licence of the arXiv and PMC open-access sets allows it, so the default is all of
them) and what we may *export* (redistribution; by default only CC BY, CC BY-SA, CC0 and
public domain, NC/ND and arXiv's non-exclusive licence by opt-in).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CC_BY = "cc-by"
CC_BY_SA = "cc-by-sa"
CC_BY_NC = "cc-by-nc"
CC_BY_NC_SA = "cc-by-nc-sa"
CC_BY_ND = "cc-by-nd"
CC_BY_NC_ND = "cc-by-nc-nd"
CC0 = "cc0"
PUBLIC_DOMAIN = "public-domain"
ARXIV_NONEXCLUSIVE = "arxiv-nonexclusive"
OTHER = "other"
ALL = frozenset({CC_BY, CC_BY_SA, CC_BY_NC, CC_BY_NC_SA, CC_BY_ND, CC_BY_NC_ND, CC0, PUBLIC_DOMAIN,
                 ARXIV_NONEXCLUSIVE, OTHER})
EXPORT_DEFAULT = frozenset({CC_BY, CC_BY_SA, CC0, PUBLIC_DOMAIN})
# bioRxiv/medRxiv "cc_no": the author kept all rights, so nothing grants text mining or
# reuse. Deliberately outside ALL: no default policy processes it and export cannot opt in
# to it; a source that has a separate TDM agreement may list it in its process set.
ALL_RIGHTS_RESERVED = "all-rights-reserved"
_NO_LICENCE_CODES = frozenset({"cc_no", "cc-no", "all rights reserved", ALL_RIGHTS_RESERVED})

_CC_PATH = re.compile(r"creativecommons\.org/licen[cs]es/([a-z-]+)/", re.I)
_CC_CODE = re.compile(r"^cc[\s_-]*(by(?:[\s_-]*(?:nc|sa|nd))*)", re.I)


def normalise(value: str | None) -> str | None:
    """Short id for a licence URL or code; None when nothing was given, ``other`` when unknown.

    >>> normalise("http://creativecommons.org/licenses/by-nc-sa/4.0/")
    'cc-by-nc-sa'
    >>> normalise("CC BY-NC")
    'cc-by-nc'
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    low = text.lower()
    if "arxiv.org/licenses/" in low or low in ("arxiv", ARXIV_NONEXCLUSIVE):
        # nonexclusive-distrib/1.0 and the "assumed-1991-2003" terms of early papers
        return ARXIV_NONEXCLUSIVE
    if low in _NO_LICENCE_CODES:
        return ALL_RIGHTS_RESERVED
    if "publicdomain/zero" in low or low.replace(" ", "") in ("cc0", "cc0-1.0", "cczero"):
        return CC0
    if "publicdomain/mark" in low or low in ("public domain", "public-domain", "pd", "publicdomain"):
        return PUBLIC_DOMAIN
    match = _CC_PATH.search(text) or _CC_CODE.match(text)
    if match:
        return _cc_id(match.group(1))
    return OTHER


def _cc_id(parts: str) -> str:
    """'by-nc-sa', 'BY NC', 'by_sa' -> a canonical cc-by* id (element order fixed)."""
    tokens = set(re.split(r"[\s_-]+", parts.lower())) - {""}
    name = "cc-by"
    if "nc" in tokens:
        name += "-nc"
    if "sa" in tokens:
        name += "-sa"
    elif "nd" in tokens:
        name += "-nd"
    return name


@dataclass(frozen=True)
class LicencePolicy:
    """Allow-lists for one source. A None licence (source said nothing) is never allowed."""

    process: frozenset[str] = field(default=ALL)
    export: frozenset[str] = field(default=EXPORT_DEFAULT)

    def process_exclusion(self, licence: str | None) -> str | None:
        """The reason a paper may not be processed, or None when it may."""
        return _exclusion("process", licence, self.process)

    def export_exclusion(self, licence: str | None) -> str | None:
        """The reason a paper may not be exported, or None when it may (used by export)."""
        return _exclusion("export", licence, self.export)

    def with_export(self, *opt_in: str) -> "LicencePolicy":
        """A copy that also exports the given licences (e.g. cc-by-nc for a non-commercial set)."""
        unknown = set(opt_in) - ALL
        if unknown:
            raise ValueError(f"unknown licence ids: {sorted(unknown)}")
        return LicencePolicy(self.process, self.export | frozenset(opt_in))


def _exclusion(point: str, licence: str | None, allowed: frozenset[str]) -> str | None:
    if licence is None:
        return f"licence: unknown (no licence given); not allowed to {point}"
    if licence not in allowed:
        return f"licence: {licence} not in the {point} allow-list"
    return None


DEFAULT_POLICIES: dict[str, LicencePolicy] = {
    "arxiv": LicencePolicy(),
    "pmc": LicencePolicy(),
    "biorxiv": LicencePolicy(),  # every CC code; cc_no (all-rights-reserved) is excluded
    "medrxiv": LicencePolicy(),
}


def policy_for(source: str, overrides: dict[str, LicencePolicy] | None = None) -> LicencePolicy:
    """The policy of a source: an override, else the default, else the global default."""
    if overrides and source in overrides:
        return overrides[source]
    return DEFAULT_POLICIES.get(source, LicencePolicy())
