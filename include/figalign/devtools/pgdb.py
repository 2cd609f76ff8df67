"""Create or drop a throwaway Postgres database (`make test` migrates one per run)."""

from __future__ import annotations

import re
import sys

from sqlalchemy import create_engine, text


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("create", "drop"):
        print("usage: python -m figalign.devtools.pgdb create|drop ADMIN_URL DBNAME", file=sys.stderr)
        return 2
    action, admin_url, name = argv
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        print(f"refusing odd database name {name!r}", file=sys.stderr)
        return 2
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if action == "create":
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        else:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
