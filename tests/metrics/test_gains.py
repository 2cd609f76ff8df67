"""Stored CLIP gains on a real store (SQLite and Postgres): the best recaption minus the
original, one row per figure and series, kept in step as scores come and go."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from figalign.metrics.gains import backfill_gains, update_gains, wanted_gains
from figalign.store.db import session_scope
from figalign.store.models import Caption, FigureRow, Metric, Paper
from figalign.store.upsert import upsert

KEY = ("figure_id", "kind", "model", "prompt_hash", "params_hash")


def _figure(s, n: int) -> tuple[int, int, int, int]:
    """A figure with an original and two recaptions; returns (figure, original, rec a, rec b)."""
    paper = upsert(s, Paper, dict(source="pmc", external_id=f"PMC{n}", version="1"), ("source", "external_id", "version"))
    fid = upsert(s, FigureRow, dict(figure_key=f"pmc:PMC{n}:f1", paper_id=paper, kind="figure", parser="jats",
                                    parser_version="1"), ("figure_key",))
    caps = [upsert(s, Caption, dict(figure_id=fid, kind=kind, model=m, prompt_hash=p, params_hash="",
                                    text="t", status="accepted"), KEY)
            for kind, m, p in (("original", "", ""), ("recaption", "vlm", "a"), ("recaption", "vlm", "b"))]
    return fid, *caps


def _score(s, fid, cid, kind, metric, value, model="clip"):
    upsert(s, Metric, dict(figure_id=fid, caption_id=cid, caption_kind=kind, metric=metric, model=model,
                           value=value, details={}), ("caption_id", "metric", "model"))


def _gains(engine):
    with session_scope(engine) as s:
        return {(r.figure_id, r.metric): (r.caption_id, round(r.value, 6)) for r in s.scalars(
            select(Metric).where(Metric.metric.like("%_gain")))}


def test_gain_follows_the_best_recaption_and_disappears_with_its_scores(engine):
    with session_scope(engine) as s:
        fid, orig, a, b = _figure(s, 1)
        _score(s, fid, orig, "original", "clip_cosine", 0.20)
        _score(s, fid, a, "recaption", "clip_cosine", 0.26)
        _score(s, fid, b, "recaption", "clip_cosine", 0.31)
        _score(s, fid, orig, "original", "pppl", 40.0)  # not a CLIP series: no gain
        _score(s, fid, a, "recaption", "pppl", 20.0)
        assert update_gains(s, [fid]) == 1
    assert _gains(engine) == {(fid, "clip_cosine_gain"): (b, 0.11)}
    with session_scope(engine) as s:  # prompt a is rescored higher: the row moves to its caption
        _score(s, fid, a, "recaption", "clip_cosine", 0.35)
        update_gains(s, [fid])
    assert _gains(engine) == {(fid, "clip_cosine_gain"): (a, 0.15)}
    with session_scope(engine) as s:  # the original's score is gone: no gain
        s.execute(delete(Metric).where(Metric.caption_id == orig))
        update_gains(s, [fid])
    assert _gains(engine) == {}


def test_backfill_is_idempotent_and_covers_every_series(engine):
    with session_scope(engine) as s:
        figs = [_figure(s, n) for n in range(1, 4)]
        for i, (fid, orig, a, _b) in enumerate(figs):
            for metric in ("clip_cosine", "clip_cosine_sentmean"):
                _score(s, fid, orig, "original", metric, 0.2)
                _score(s, fid, a, "recaption", metric, 0.2 + i / 100)
    with session_scope(engine) as s:
        assert backfill_gains(s, chunk=2) == 6
    first = _gains(engine)
    with session_scope(engine) as s:
        assert backfill_gains(s) == 6
    assert _gains(engine) == first and len(first) == 6
    assert first[(figs[2][0], "clip_cosine_sentmean_gain")] == (figs[2][2], 0.02)


@pytest.mark.parametrize("rows,expected", [
    ([(1, "clip_cosine", "m", "recaption", 7, 0.3)], {}),  # no original
    ([(1, "clip_cosine", "m", "original", 5, 0.2), (1, "clip_cosine", "n", "recaption", 7, 0.3)], {}),  # other model
    ([(1, "clip_cosine", "m", "original", 5, 0.2), (1, "clip_cosine", "m", "recaption", 9, 0.3),
      (1, "clip_cosine", "m", "recaption", 7, 0.3)], {(1, "clip_cosine_gain", "m"): 7}),  # tie: earliest caption
])
def test_wanted_gains_pairs_scores_of_the_same_model(rows, expected):
    assert {k: v["caption_id"] for k, v in wanted_gains(rows).items()} == expected


def test_cli_backfill_gains(engine, db_url, monkeypatch, capsys):
    from figalign.cli import main

    with session_scope(engine) as s:
        fid, orig, a, _b = _figure(s, 7)
        _score(s, fid, orig, "original", "clip_cosine", 0.25)
        _score(s, fid, a, "recaption", "clip_cosine", 0.30)
    monkeypatch.setenv("FIGALIGN_DATABASE_URL", db_url)
    assert main(["score", "--backfill-gains"]) == 0
    assert '"gain_rows": 1' in capsys.readouterr().out
    assert _gains(engine) == {(fid, "clip_cosine_gain"): (a, 0.05)}
