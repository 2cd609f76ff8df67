"""Shared fixtures: stores on SQLite and on a throwaway Postgres database, corpus paths.

Postgres comes from FIGALIGN_TEST_PG_URL (an admin URL; `make test` sets it). Each test
that asks for ``db_url`` on Postgres gets a fresh database that is dropped afterwards.
When no server answers, Postgres cases skip — unless FIGALIGN_TEST_REQUIRE_PG=1 (set by
`make test` and CI), where they fail instead, so CI can never pass without Postgres.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PG_ADMIN_URL = os.environ.get("FIGALIGN_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def require_corpus(*parts: str) -> Path:
    """Path inside ../shared/corpus, or skip the test when the corpus is not beside the repo."""
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the shared corpus at {path} (../shared beside the checkout)")
    return path


def _pg_available() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any connection failure means "no server"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


_PG_PROBLEM: list[str | None] = []


def pg_problem() -> str | None:
    if not _PG_PROBLEM:
        _PG_PROBLEM.append(_pg_available())
    return _PG_PROBLEM[0]


@contextlib.contextmanager
def throwaway_database(prefix: str = "figalign_t"):
    """A fresh, empty Postgres database (its URL); dropped afterwards, connections and all."""
    from figalign.devtools.pgdb import create_database, drop_database

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = create_database(PG_ADMIN_URL, name)
    try:
        yield url
    finally:
        drop_database(PG_ADMIN_URL, name)


@pytest.fixture
def pg_url():
    """A fresh, empty Postgres database for one test; dropped afterwards."""
    problem = pg_problem()
    if problem:
        if os.environ.get("FIGALIGN_TEST_REQUIRE_PG") == "1":
            pytest.fail(f"Postgres required but unreachable at {PG_ADMIN_URL}: {problem}")
        pytest.skip(f"no Postgres at {PG_ADMIN_URL}: {problem}")
    with throwaway_database() as url:
        try:
            yield url
        finally:  # cached engines go before their database does
            from figalign.store.db import _engine_for

            _engine_for.cache_clear()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """An empty store URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


def _migrated_engine(url: str):
    """Migrate the store at ``url`` and yield an engine on it (disposed afterwards)."""
    from figalign.store.db import make_engine
    from figalign.store.migrate import upgrade

    upgrade(url)
    eng = make_engine(url)
    yield eng
    eng.dispose()


@pytest.fixture
def engine(db_url):
    """A migrated store on each backend."""
    yield from _migrated_engine(db_url)


@pytest.fixture
def sqlite_engine(sqlite_url):
    yield from _migrated_engine(sqlite_url)


@pytest.fixture
def pg_engine(pg_url):
    """A migrated store on Postgres only (planner checks, Postgres-only behaviour)."""
    yield from _migrated_engine(pg_url)


@pytest.fixture(scope="session")
def s3_server():
    """moto's standalone S3 server, one per test session (tests/servers/s3_server.py)."""
    from tests.servers.s3_server import S3Server

    server = S3Server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The standard AWS variables pointed at the test S3 server, and a fresh bucket: ``s3://<bucket>``."""
    from tests.servers.s3_server import clear_fsspec_cache

    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    clear_fsspec_cache()
    yield f"s3://{s3_server.bucket()}"
    clear_fsspec_cache()
