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
