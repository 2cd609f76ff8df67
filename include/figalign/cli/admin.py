"""`figalign config` and `figalign db`: the effective settings and the store's migrations."""

from __future__ import annotations

import argparse


def _cmd_config(args: argparse.Namespace) -> int:
    from figalign.config import load_settings

    settings = load_settings()
    width = max(len(k) for k in settings.masked())
    for key, value in settings.masked().items():
        print(f"{key:<{width}}  {value}")
    return 0


def _cmd_db(args: argparse.Namespace) -> int:
    from figalign.config import load_settings
    from figalign.store import migrate

    url = load_settings().effective_database_url
    if args.action == "upgrade":
        migrate.upgrade(url, args.revision or "head")
    elif args.action == "downgrade":
        migrate.downgrade(url, args.revision or "-1")
    elif args.action == "check":
        diff = migrate.pending_diff(url)
        if diff:
            print("models and database differ:", *diff, sep="\n  ")
            return 1
    print(f"store at revision {migrate.current_revision(url)} (head {migrate.head_revision()})")
    return 0


def add_commands(sub) -> None:
    c = sub.add_parser("config", help="print the effective configuration (secrets masked)")
    c.set_defaults(func=_cmd_config)
    d = sub.add_parser("db", help="migrate or inspect the provenance store")
    d.add_argument("action", choices=["upgrade", "downgrade", "current", "check"])
    d.add_argument("revision", nargs="?", help="target revision (upgrade: head; downgrade: -1)")
    d.set_defaults(func=_cmd_db)
