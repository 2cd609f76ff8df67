"""Shared fixtures: stores on SQLite and on a throwaway Postgres database, corpus paths.

Postgres comes from FIGALIGN_TEST_PG_URL (an admin URL; `make test` sets it). Each test
that asks for ``db_url`` on Postgres gets a fresh database that is dropped afterwards.
When no server answers, Postgres cases skip — unless FIGALIGN_TEST_REQUIRE_PG=1 (set by
`make test` and CI), where they fail instead, so CI can never pass without Postgres.
"""

from __future__ import annotations

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


def _swap_db(url: str, name: str) -> str:
    base, _, _db = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
def pg_url():
    """A fresh, empty Postgres database for one test; dropped afterwards."""
    problem = pg_problem()
    if problem:
        if os.environ.get("FIGALIGN_TEST_REQUIRE_PG") == "1":
            pytest.fail(f"Postgres required but unreachable at {PG_ADMIN_URL}: {problem}")
        pytest.skip(f"no Postgres at {PG_ADMIN_URL}: {problem}")
    name = f"figalign_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield _swap_db(PG_ADMIN_URL, name)
    finally:
        from figalign.store.db import _engine_for

        _engine_for.cache_clear()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """An empty store URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(db_url):
    """A migrated store on each backend."""
    from figalign.store.db import make_engine
    from figalign.store.migrate import upgrade

    upgrade(db_url)
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url):
    from figalign.store.db import make_engine
    from figalign.store.migrate import upgrade

    upgrade(sqlite_url)
    eng = make_engine(sqlite_url)
    yield eng
    eng.dispose()


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
