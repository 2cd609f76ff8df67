"""The store-resident near-duplicate index finds exactly what a brute-force Hamming scan finds."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa
from sqlalchemy import insert, select

from figalign.dedup import hamming, phash_columns, phash_int, store_probes
from figalign.store.db import session_scope
from figalign.store.duplicates import find_originals
from figalign.store.models import Artifact, FigureRow, Paper, utcnow

K = 6


def _fill(engine, rows: list[dict]) -> None:
    now = utcnow()
    with session_scope(engine) as s:
        s.execute(insert(Paper), [dict(id=1, source="pmc", external_id="P1", version="", authors=[], categories=[],
                                       source_urls={}, retracted=False, created_at=now, updated_at=now)])
        s.execute(insert(Artifact), [dict(id=1, sha256="a" * 64, size=1, storage_uri="/x", fetched_at=now)])
        base = dict(paper_id=1, kind="figure", ordinal=0, subfigures=[], parser="t", parser_version="1",
                    created_at=now, updated_at=now)
        s.execute(insert(FigureRow), [{**base, **r} for r in rows])


def _hex(value: int) -> str:
    return f"{value:016x}"


def _flip(value: int, bits: int, rnd: random.Random) -> int:
    for b in rnd.sample(range(64), bits):
        value ^= 1 << b
    return value


def _random_store(n: int, rnd: random.Random) -> list[dict]:
    """n figures: random hashes, a planted copy at every distance 0..K+1 of earlier ones,
    some exact pixel copies, and rows that are not kept (filtered, no image) or have no hash."""
    rows, values = [], []
    for fid in range(1, n + 1):
        if fid > 50 and fid % 7 == 0:
            value = _flip(values[rnd.randrange(len(values))], fid // 7 % (K + 2), rnd)  # distances 0..K+1
        elif fid > 50 and fid % 11 == 0:
            value = values[rnd.randrange(len(values))] ^ (1 << 63)  # the sign bit: signed storage
        else:
            value = rnd.getrandbits(64)
        values.append(value)
        phash = None if fid % 53 == 0 else _hex(value)
        sha = f"{rnd.randrange(n // 20):064x}"  # ~20 figures per pixel sha: exact copies
        rows.append(dict(id=fid, figure_key=f"F{fid}", phash=phash, pixel_sha256=sha, **phash_columns(phash),
                         image_artifact_id=None if fid % 17 == 0 else 1,
                         filter_reason="table:tabular" if fid % 13 == 0 else None))
    return rows


def _brute_force(kept: list[tuple[int, int | None, str]], fid: int, phash: str | None,
                 sha: str | None) -> dict[int, tuple[str, int]]:
    """Every kept lower-id figure, compared one by one."""
    out = {}
    value = phash_int(phash)
    for other, other_value, other_sha in kept:
        if other >= fid:
            break
        if sha and other_sha == sha:
            out[other] = ("exact", 0)
        elif value is not None and other_value is not None and hamming(value, other_value) <= K:
            out[other] = ("near", hamming(value, other_value))
    return out


def test_store_index_equals_brute_force(engine):
    rnd = random.Random(16)
    rows = _random_store(3000, rnd)
    _fill(engine, rows)
    probes = [(r["id"], r["phash"], r["pixel_sha256"]) for r in rows if r["id"] % 7 == 0 or r["id"] % 11 == 0
              or r["id"] % 5 == 1]  # every planted copy, and a fifth of the rest
    probes.append((5000, _hex(_flip(int(rows[100]["phash"], 16), K + 1, rnd)), None))  # just past the distance
    probes.append((5001, "not-a-hash", None))
    with session_scope(engine) as s:
        batch = find_originals(s, probes, K)
        one_by_one = {p[0]: find_originals(s, [p], K)[p[0]] for p in probes[::37]}
    kept = [(r["id"], phash_int(r["phash"]), r["pixel_sha256"]) for r in rows
            if r["filter_reason"] is None and r["image_artifact_id"] is not None]
    near_distances = set()
    for fid, phash, sha in probes:
        got = {m.figure_id: (m.how, m.distance) for m in batch[fid]}
        assert got == _brute_force(kept, fid, phash, sha), fid
        assert [m.figure_id for m in batch[fid]] == sorted(got)
        near_distances |= {d for how, d in got.values() if how == "near"}
    assert near_distances == set(range(K + 1))  # every distance up to K was planted and found
    assert batch[5000] == [] and batch[5001] == []
    for fid, matches in one_by_one.items():
        assert matches == batch[fid]
    assert len(rows) - len(kept) > 300  # not-kept rows were there to skip


@pytest.mark.parametrize("k", [0, 1, 2, 5, 7, 9])
def test_probes_cover_every_split_of_the_distance(k):
    """Whatever way k errors fall over the three bands, one band's errors are within its radius."""
    from itertools import product

    from figalign.dedup import band_radii

    radii = band_radii(k)
    for errors in product(range(k + 1), repeat=3):
        if sum(errors) <= k:
            assert any(e <= r for e, r in zip(errors, radii)), (errors, radii)
    assert sum(len(m) for m in store_probes(k)) > 0


def test_migration_backfills_the_bands(db_url):
    from figalign.store import migrate
    from figalign.store.db import make_engine

    migrate.upgrade(db_url, "0005")
    engine = make_engine(db_url)
    papers = sa.table("papers", *(sa.column(c) for c in ("id", "source", "external_id", "version", "authors",
                                                          "categories", "retracted", "source_urls", "created_at",
                                                          "updated_at")))
    figures = sa.table("figures", *(sa.column(c) for c in ("id", "paper_id", "figure_key", "kind", "ordinal", "parser",
                                                           "parser_version", "subfigures", "phash", "created_at",
                                                           "updated_at")))
    hashes = {1: "ffffffffffffffff", 2: "0123456789abcdef", 3: "8000000000000001", 4: None, 5: "zz"}
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(papers.insert(), [dict(id=1, source="pmc", external_id="P", version="", authors="[]",
                                            categories="[]", retracted=False, source_urls="{}", created_at=now,
                                            updated_at=now)])
        conn.execute(figures.insert(), [dict(id=i, paper_id=1, figure_key=f"F{i}", kind="figure", ordinal=0,
                                             parser="t", parser_version="1", subfigures="[]", phash=h,
                                             created_at=now, updated_at=now) for i, h in hashes.items()])
    migrate.upgrade(db_url)
    with engine.connect() as conn:
        got = {r.id: r for r in conn.execute(select(FigureRow.id, FigureRow.phash_bits, FigureRow.phash_b0,
                                                    FigureRow.phash_b1, FigureRow.phash_b2))}
    engine.dispose()
    for fid, phash in hashes.items():
        want = phash_columns(phash)
        assert {k: getattr(got[fid], k) for k in want} == want, fid
