"""Create or drop a throwaway Postgres database (`make test` migrates one per run; the tests and
the store benchmarks make theirs with the same functions)."""

from __future__ import annotations

import re
import sys

from sqlalchemy import create_engine, text

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _admin(admin_url: str, name: str, sql: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"refusing odd database name {name!r}")
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql.format(name=name)))
    finally:
        engine.dispose()


def database_url(admin_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``admin_url``."""
    return admin_url.rsplit("/", 1)[0] + "/" + name


def create_database(admin_url: str, name: str) -> str:
    """Create an empty database; return its URL."""
    _admin(admin_url, name, 'CREATE DATABASE "{name}"')
    return database_url(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop the database if it exists, closing whatever is still connected to it."""
    _admin(admin_url, name, 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("create", "drop"):
        print("usage: python -m figalign.devtools.pgdb create|drop ADMIN_URL DBNAME", file=sys.stderr)
        return 2
    action, admin_url, name = argv
    try:
        (create_database if action == "create" else drop_database)(admin_url, name)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
