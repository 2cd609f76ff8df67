"""`figalign explore`: the dataset explorer without Airflow, for a store or an export.

Binds 127.0.0.1 by default: standalone there is no Airflow login in front of it, so
exposing it on other interfaces is an explicit choice (``--host 0.0.0.0``).
"""

from __future__ import annotations

import argparse


def _cmd_explore(args: argparse.Namespace) -> int:
    import uvicorn

    from figalign.config import load_settings
    from figalign.explore.app import create_app

    overrides = {}
    if args.database_url:
        overrides["database_url"] = args.database_url
    if args.data_dir:
        overrides["data_dir"] = args.data_dir  # a folder or an fsspec URL: kept as text
    app = create_app(load_settings(**overrides))
    print(f"figalign explorer on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("explore", help="browse figures, captions, recaptions and scores in a web browser")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--database-url", help="store URL (default FIGALIGN_DATABASE_URL or SQLite in the data dir)")
    p.add_argument("--data-dir",
                   help="data dir (folder or s3:// URL) holding objects/ (default FIGALIGN_DATA_DIR or ./data)")
    p.set_defaults(func=_cmd_explore)
