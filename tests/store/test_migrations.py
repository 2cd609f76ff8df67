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


def test_expression_indexes_match_the_models(db_url, tmp_path):
    """What autogenerate cannot compare (``migrate.EXPRESSION_INDEXES``), the database can:
    the migrated index and the models' index, each as the database itself defines it."""
    from sqlalchemy import create_engine

    from figalign.store.models import Base
    from tests.conftest import throwaway_database

    migrate.upgrade(db_url)
    migrated = migrate.expression_index_definitions(db_url)
    assert set(migrated) == set(migrate.EXPRESSION_INDEXES)

    def from_models(url):
        engine = create_engine(url)
        Base.metadata.create_all(engine)
        engine.dispose()
        return migrate.expression_index_definitions(url)

    if db_url.startswith("sqlite"):
        modelled = from_models(f"sqlite:///{tmp_path / 'models.db'}")
    else:
        with throwaway_database("figalign_models") as url:
            modelled = from_models(url)
    assert modelled == migrated


def test_upgrade_is_repeatable(db_url):
    migrate.upgrade(db_url)
    migrate.upgrade(db_url)
    assert migrate.current_revision(db_url) == migrate.head_revision()


def _seed_old_keys(db_url):
    """A store at 0004 holding keys in the old, repeated-id form (and one duplicate's reason).

    Written with tables of the columns 0004 has (the models have grown since)."""
    import sqlalchemy as sa

    from figalign.store.models import utcnow

    migrate.upgrade(db_url, "0004")
    engine = make_engine(db_url)
    papers = sa.table("papers", *(sa.column(c) for c in ("id", "source", "external_id", "version", "title",
                                                          "authors", "categories", "retracted", "source_urls", "created_at",
                                                          "updated_at")))
    figures = sa.table("figures", *(sa.column(c) for c in ("paper_id", "figure_key", "kind", "ordinal", "parser",
                                                           "parser_version", "filter_reason", "subfigures",
                                                           "created_at", "updated_at")))
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(papers.insert().values(created_at=now, updated_at=now), [
            dict(id=1, source="arxiv", external_id="1706.03762", version="v5", title="T", authors="[]",
                 categories="[]", retracted=False, source_urls="{}"),
            dict(id=2, source="pmc", external_id="PMC176545", version="", title="P", authors="[]", categories="[]",
                 retracted=False, source_urls="{}")])
        base = dict(ordinal=0, subfigures="[]", filter_reason=None)
        conn.execute(figures.insert().values(created_at=now, updated_at=now), [
            {**base, "figure_key": "arxiv:1706.03762v5:1706.03762:fig1", "paper_id": 1, "kind": "figure",
             "parser": "latex", "parser_version": "1"},
            {**base, "figure_key": "pmc:PMC176545:PMC176545:fig2", "paper_id": 2, "kind": "figure", "parser": "jats",
             "parser_version": "1", "filter_reason": "duplicate-of:arxiv:1706.03762v5:1706.03762:fig1"},
            {**base, "figure_key": "pmc:PMC176545:tab#1", "paper_id": 2, "kind": "table", "parser": "jats",
             "parser_version": "1"},  # already short: left alone
        ])
    return engine


def _keys(engine):
    import sqlalchemy as sa

    figures = sa.table("figures", sa.column("figure_key"), sa.column("filter_reason"))
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(figures.c.figure_key, figures.c.filter_reason)).all())


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
