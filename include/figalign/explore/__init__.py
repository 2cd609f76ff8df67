"""Dataset explorer: look at figures, captions, recaptions, contexts and scores side by side.

One FastAPI app (``create_app``) serves both the Airflow UI plugin
(``plugins/figalign_airflow/explorer_plugin.py``, mounted at ``/figalign`` behind Airflow's
auth) and ``figalign explore`` (standalone uvicorn). It only ever reads the store: its engine
refuses writes, so a person browsing can never block or corrupt a running pipeline.
"""

from __future__ import annotations

__all__ = ["create_app"]


def create_app(*args, **kwargs):
    """Build the explorer app (imported lazily so ``import figalign.explore`` stays cheap)."""
    from figalign.explore.app import create_app as _create_app

    return _create_app(*args, **kwargs)
