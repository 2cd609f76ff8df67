"""Apply Alembic migrations programmatically (`figalign db upgrade`).

The Alembic scripts ship inside the package, so an installed figalign can migrate a store
without an alembic.ini in the working directory.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from figalign.store.db import make_engine

    make_engine(url).dispose()  # creates the SQLite folder when needed
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from figalign.store.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def pending_diff(url: str) -> list:
    """Differences between the models and the migrated database (empty when they agree).

    Expression indexes are left out: the database gives their expressions back rewritten
    (``(entity_id)::text``, added casts), so autogenerate would always see a change.
    ``expression_index_definitions`` reads them for a test to compare instead.
    """
    from alembic.autogenerate import compare_metadata

    from figalign.store.db import make_engine
    from figalign.store.models import Base

    def include(obj, name, type_, reflected, compare_to):
        return not (type_ == "index" and name in EXPRESSION_INDEXES)

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


EXPRESSION_INDEXES = ("ix_stage_runs_unsettled_entity",)


def expression_index_definitions(url: str) -> dict[str, str]:
    """The database's own definition (its DDL) of each of ``EXPRESSION_INDEXES``."""
    from sqlalchemy import text

    from figalign.store.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                sql = "SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(:names)"
                rows = conn.execute(text(sql), {"names": list(EXPRESSION_INDEXES)})
            else:
                names = ", ".join(f"'{n}'" for n in EXPRESSION_INDEXES)
                rows = conn.execute(text(f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND name IN ({names})"))
            return {name: definition for name, definition in rows}
    finally:
        engine.dispose()
