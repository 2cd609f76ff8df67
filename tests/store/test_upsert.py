"""Every write is an upsert: writing the same natural key twice leaves one updated row."""

from __future__ import annotations

from sqlalchemy import func, select

from figalign.store.db import session_scope
from figalign.store.models import Caption, FigureRow, Paper
from figalign.store.upsert import upsert

PAPER_KEY = ("source", "external_id", "version")


def _paper(title: str) -> dict:
    return dict(source="arxiv", external_id="1706.03762", version="v5", title=title,
                authors=["A. Vaswani"], categories=["cs.CL"], licence="arxiv-nonexclusive")


def test_paper_upsert_is_idempotent_and_updates(engine):
    with session_scope(engine) as s:
        first = upsert(s, Paper, _paper("Attention"), PAPER_KEY)
    with session_scope(engine) as s:
        second = upsert(s, Paper, _paper("Attention Is All You Need"), PAPER_KEY)
    with session_scope(engine) as s:
        assert first == second
        assert s.scalar(select(func.count()).select_from(Paper)) == 1
        assert s.get(Paper, first).title == "Attention Is All You Need"


def test_figure_and_caption_upserts_keep_one_row(engine):
    with session_scope(engine) as s:
        pid = upsert(s, Paper, _paper("T"), PAPER_KEY)
        fig = dict(figure_key="arxiv:1706.03762:fig1", paper_id=pid, label="Figure 1", number="1",
                   kind="figure", parser="latex", parser_version="1.0.0")
        f1 = upsert(s, FigureRow, fig, ("figure_key",))
        f2 = upsert(s, FigureRow, {**fig, "width": 640}, ("figure_key",))
        cap = dict(figure_id=f1, kind="original", model="", prompt_hash="", params_hash="", text="The model.")
        c1 = upsert(s, Caption, cap, ("figure_id", "kind", "model", "prompt_hash", "params_hash"))
        c2 = upsert(s, Caption, {**cap, "text": "The Transformer."},
                    ("figure_id", "kind", "model", "prompt_hash", "params_hash"))
    with session_scope(engine) as s:
        assert f1 == f2 and c1 == c2
        assert s.scalar(select(func.count()).select_from(FigureRow)) == 1
        assert s.get(FigureRow, f1).width == 640
        assert s.get(Caption, c1).text == "The Transformer."


def test_insert_only_upsert_keeps_the_first_values(engine):
    with session_scope(engine) as s:
        a = upsert(s, Paper, _paper("first"), PAPER_KEY, update=())
        b = upsert(s, Paper, _paper("second"), PAPER_KEY, update=())
    with session_scope(engine) as s:
        assert a == b
        assert s.get(Paper, a).title == "first"
