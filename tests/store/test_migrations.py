"""Migrations upgrade and downgrade on both backends, and agree with the models."""

from __future__ import annotations

from sqlalchemy import inspect

from figalign.store import migrate
from figalign.store.db import make_engine
from figalign.store.models import Base


def test_upgrade_creates_every_model_table_then_downgrade_removes_them(db_url):
    migrate.upgrade(db_url)
    assert migrate.current_revision(db_url) == migrate.head_revision()
    engine = make_engine(db_url)
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    engine.dispose()

    migrate.downgrade(db_url, "base")
    assert migrate.current_revision(db_url) is None
    engine = make_engine(db_url)
    left = set(inspect(engine).get_table_names()) - {"alembic_version"}
    engine.dispose()
    assert left == set()


def test_models_and_migrations_agree(db_url):
    migrate.upgrade(db_url)
    assert migrate.pending_diff(db_url) == []


def test_upgrade_is_repeatable(db_url):
    migrate.upgrade(db_url)
    migrate.upgrade(db_url)
    assert migrate.current_revision(db_url) == migrate.head_revision()


def _seed_old_keys(db_url):
    """A store at 0004 holding keys in the old, repeated-id form (and one duplicate's reason).

    Rows go in as core inserts of the named columns only (plus the models' Python-side
    defaults): the ORM would also write columns that later migrations added."""
    from sqlalchemy import insert

    from figalign.store.db import session_scope
    from figalign.store.models import FigureRow, Paper

    migrate.upgrade(db_url, "0004")
    engine = make_engine(db_url)
    with session_scope(engine) as s:
        ids = [s.execute(insert(Paper).values(source=src, external_id=ext, version=v, title="T", authors=[],
                                              categories=[]).returning(Paper.id)).scalar_one()
               for src, ext, v in (("arxiv", "1706.03762", "v5"), ("pmc", "PMC176545", ""))]
        arxiv, pmc = ids
        s.execute(insert(FigureRow), [
            dict(figure_key="arxiv:1706.03762v5:1706.03762:fig1", paper_id=arxiv, kind="figure",
                 parser="latex", parser_version="1"),
            dict(figure_key="pmc:PMC176545:PMC176545:fig2", paper_id=pmc, kind="figure", parser="jats",
                 parser_version="1", filter_reason="duplicate-of:arxiv:1706.03762v5:1706.03762:fig1"),
            dict(figure_key="pmc:PMC176545:tab#1", paper_id=pmc, kind="table", parser="jats",
                 parser_version="1"),  # already short: left alone
        ])
    return engine


def _keys(engine):
    from sqlalchemy import select

    from figalign.store.models import FigureRow

    with engine.connect() as conn:
        return dict(conn.execute(select(FigureRow.figure_key, FigureRow.filter_reason)).all())


def test_0005_drops_the_repeated_paper_id_from_figure_keys_and_back(db_url):
    engine = _seed_old_keys(db_url)
    migrate.upgrade(db_url, "0005")
    assert _keys(engine) == {
        "arxiv:1706.03762v5:fig1": None,
        "pmc:PMC176545:fig2": "duplicate-of:arxiv:1706.03762v5:fig1",
        "pmc:PMC176545:tab#1": None,
    }
    migrate.downgrade(db_url, "0004")
    assert _keys(engine) == {
        "arxiv:1706.03762v5:1706.03762:fig1": None,
        "pmc:PMC176545:PMC176545:fig2": "duplicate-of:arxiv:1706.03762v5:1706.03762:fig1",
        "pmc:PMC176545:PMC176545:tab#1": None,
    }
    engine.dispose()
