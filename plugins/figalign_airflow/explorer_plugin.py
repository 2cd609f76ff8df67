"""Airflow UI plugin: the figalign dataset explorer, inside the Airflow api-server.

Registers the explorer's FastAPI app at ``/figalign`` and a "Figures" entry in the
UI navigation (an external view shown in the UI's iframe). Every route depends on
Airflow's own authentication (``requires_access_view(WEBSITE)``: a signed-in user allowed
to see the Airflow website), so the explorer is exactly as private as the UI itself.

The app is built on the first request, not at import: Airflow imports plugins in every
component (scheduler, dag processor, workers), and only the api-server ever serves it.
"""

from __future__ import annotations

import threading

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/figalign"


def airflow_auth_dependency():
    """Airflow's check that the caller is signed in and may see the web UI."""
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import requires_access_view

    return requires_access_view(AccessView.WEBSITE)


def build_explorer():
    """The explorer app over the store named by the environment and figalign_* connections."""
    from figalign.explore.app import create_app
    from figalign_airflow.hooks import figalign_settings

    return create_app(figalign_settings(), auth_dependency=airflow_auth_dependency())


class LazyASGIApp:
    """An ASGI app that builds the real one on its first request (thread-safe, once)."""

    def __init__(self, factory):
        self._factory = factory
        self._app = None
        self._lock = threading.Lock()

    @property
    def app(self):
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
        return self._app

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return "figalign.explore.app:create_app (lazy)"


explorer_app = LazyASGIApp(build_explorer)


class FigalignExplorerPlugin(AirflowPlugin):
    """The dataset explorer as an Airflow 3 plugin: a FastAPI app plus a nav entry."""

    name = "figalign_explorer"
    fastapi_apps = [{"app": explorer_app, "url_prefix": URL_PREFIX, "name": "figalign dataset explorer"}]
    external_views = [{
        "name": "Figures",  # the nav shows ~8 characters: "Dataset explorer" read "Dataset …"
        "href": URL_PREFIX + "/",
        "destination": "nav",
        "url_route": "figalign-explorer",
    }]
