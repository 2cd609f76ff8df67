"""Near-duplicate and exact-duplicate lookup in the store itself: no index to load.

Every figure row carries its pHash as ``phash_bits`` and cut into three bands
(``figalign.dedup.STORE_BANDS``); each band has an index over kept figures only, holding
the band value, the whole hash and the id (0009_phash_segments). A lookup probes each band
with the band values ``figalign.dedup.store_probes`` lists (by pigeonhole, every hash within
the distance shares one of them) and checks the Hamming distance of what it finds: on
Postgres inside the server (``bit_count``), as an index-only scan per probe; on SQLite in
Python, over the few candidates the probes return. Exact copies are found by
``pixel_sha256``. Only figures still kept and with a lower id count ("first seen is kept").

A lookup is a read without locks: the caller re-reads the figure it links to under a row
lock before trusting it (``stages.filter``), as it did with the in-process index.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, select, text
from sqlalchemy.orm import Session

from figalign.dedup import STORE_BANDS, Match, hamming, phash_int, signed64, store_bands, store_probes
from figalign.store.models import FigureRow

KEPT_F = "f.filter_reason IS NULL AND f.image_artifact_id IS NOT NULL"  # models.KEPT_SQL, on alias f
Probe = tuple[int, str | None, str | None]  # (figure id, phash, pixel sha256)


def find_originals(session: Session, probes: Sequence[Probe], max_distance: int) -> dict[int, list[Match]]:
    """For each probed figure, the kept lower-id figures it duplicates, lowest id first.

    Exact (same pixels) wins over near for the same figure; near matches carry their
    distance. One round trip on Postgres however many figures are probed.
    """
    if not probes:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        rows = _postgres_rows(session, probes, max_distance)
    else:
        rows = _portable_rows(session, probes, max_distance)
    found: dict[int, dict[int, Match]] = {fid: {} for fid, _, _ in probes}
    for qid, fid, distance in rows:
        have = found[qid].get(fid)
        if have is None or distance < have.distance:
            found[qid][fid] = Match(fid, "exact" if distance < 0 else "near", max(distance, 0))
    return {qid: sorted(m.values(), key=lambda x: x.figure_id) for qid, m in found.items()}


# -- Postgres: one statement; each probe an index-only scan, in band-value order -----------
def _band_sql(i: int) -> str:
    shift, width = STORE_BANDS[i]
    # Every (figure, probe value) pair of the batch, sorted by value, then one index probe per
    # pair (LATERAL … OFFSET 0 keeps it a probe, never a hash or merge join over every kept
    # figure): consecutive probes land on the same index pages, which at 10 M figures are
    # mostly not in shared buffers. bench/bench_store_scale.py (dedup) measured it 1.1x
    # (one figure), 1.15x (batches of 500) and 1.6x (5,000) faster than one ``= ANY(array)``
    # scan per figure, docs/benchmarks.md.
    return f"""
      SELECT p.qid, c.id, c.d FROM
        (SELECT q.qid, q.bits, (((q.bits >> {shift}) & {(1 << width) - 1})::int # m) AS v
           FROM q CROSS JOIN unnest(CAST(:m{i} AS int[])) m ORDER BY 3 OFFSET 0) p
      CROSS JOIN LATERAL (
        SELECT f.id, bit_count((f.phash_bits # p.bits)::bit(64))::int AS d FROM figures f
        WHERE f.phash_b{i} = p.v AND {KEPT_F} AND f.id < p.qid
          AND bit_count((f.phash_bits # p.bits)::bit(64)) <= :k
        OFFSET 0) c"""


def _postgres_rows(session: Session, probes: Sequence[Probe], max_distance: int) -> list[tuple[int, int, int]]:
    hashed = [(fid, phash_int(ph)) for fid, ph, _ in probes]
    hashed = [(fid, signed64(v)) for fid, v in hashed if v is not None]
    shas = [(fid, sha) for fid, _, sha in probes if sha]
    parts, params = [], {"k": max_distance}
    if hashed:
        params.update(qid=[f for f, _ in hashed], bits=[b for _, b in hashed])
        for i, masks in enumerate(store_probes(max_distance)):
            if masks:
                params[f"m{i}"] = masks
                parts.append(_band_sql(i))
    sql = ""
    if parts:
        sql = ("WITH q AS (SELECT * FROM unnest(CAST(:qid AS bigint[]), CAST(:bits AS bigint[])) AS t(qid, bits)) "
               + " UNION ALL ".join(parts))
    if shas:
        params.update(sqid=[f for f, _ in shas], sha=[s for _, s in shas])
        exact = ("SELECT s.qid, f.id, -1 FROM unnest(CAST(:sqid AS bigint[]), CAST(:sha AS text[])) AS s(qid, sha) "
                 f"JOIN figures f ON f.pixel_sha256 = s.sha AND f.id < s.qid AND {KEPT_F}")
        sql = f"{sql} UNION ALL {exact}" if sql else exact
    if not sql:
        return []
    return [tuple(r) for r in session.execute(text(sql), params).all()]


# -- SQLite (and any other backend): per figure, probe values by IN, distance in Python ----
def _portable_rows(session: Session, probes: Sequence[Probe], max_distance: int) -> list[tuple[int, int, int]]:
    kept = and_(FigureRow.filter_reason.is_(None), FigureRow.image_artifact_id.is_not(None))
    band_cols = [FigureRow.phash_b0, FigureRow.phash_b1, FigureRow.phash_b2]
    masks = store_probes(max_distance)
    out: list[tuple[int, int, int]] = []
    for qid, phash, sha in probes:
        if sha:
            out += [(qid, fid, -1) for fid in session.execute(select(FigureRow.id).where(
                kept, FigureRow.id < qid, FigureRow.pixel_sha256 == sha)).scalars()]
        value = phash_int(phash)
        if value is None:
            continue
        for col, band, band_masks in zip(band_cols, store_bands(value), masks):
            if not band_masks:
                continue
            rows = session.execute(select(FigureRow.id, FigureRow.phash_bits).where(
                kept, FigureRow.id < qid, col.in_([band ^ m for m in band_masks]))).all()
            for fid, bits in rows:
                distance = hamming(value, bits & ((1 << 64) - 1))
                if distance <= max_distance:
                    out.append((qid, fid, distance))
    return out
