"""The Airflow plugin registers the explorer app and its nav entry, loads cleanly, and puts
Airflow's own authentication in front of every route."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"


@pytest.fixture
def plugin_module(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from figalign_airflow import explorer_plugin

    return explorer_plugin


def test_plugin_registers_the_app_and_a_nav_entry(plugin_module):
    plugin = plugin_module.FigalignExplorerPlugin
    assert plugin.name == "figalign_explorer"
    [app] = plugin.fastapi_apps
    assert app["url_prefix"] == "/figalign" and app["name"] and callable(app["app"])
    [view] = plugin.external_views
    assert view["destination"] == "nav" and view["href"] == "/figalign/" and view["url_route"]


def test_plugins_manager_loads_the_plugin_without_errors(tmp_path):
    """Airflow's own loader, over the real plugins folder, in a clean process."""
    code = (
        "import json\n"
        "from airflow import plugins_manager\n"
        "plugins, errors = plugins_manager._get_plugins()\n"
        "apps, _ = plugins_manager.get_fastapi_plugins()\n"
        "views, _ = plugins_manager._get_ui_plugins()\n"
        "print(json.dumps({'names': [p.name for p in plugins], 'errors': {k: str(v) for k, v in errors.items()},"
        " 'prefixes': [a['url_prefix'] for a in apps], 'views': [v['url_route'] for v in views]}))\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow_home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(PLUGINS), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert "figalign_explorer" in result["names"]
    assert "/figalign" in result["prefixes"]
    assert "figalign-explorer" in result["views"]


def test_mounted_app_requires_airflow_login(plugin_module, monkeypatch, tmp_path):
    """Mounted the way the api-server mounts plugin apps, every route answers 401 without a token,
    through Airflow's real ``get_user`` dependency."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from figalign.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    monkeypatch.setenv("FIGALIGN_DATABASE_URL", url)
    monkeypatch.setenv("FIGALIGN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr("figalign_airflow.hooks.overrides_from_connections", lambda: {})
    lazy = plugin_module.LazyASGIApp(plugin_module.build_explorer)
    root = FastAPI()
    root.mount(plugin_module.URL_PREFIX, lazy)
    with TestClient(root) as client:
        for path in ("/figalign/", "/figalign/api/figures", "/figalign/stages", "/figalign/image/" + "0" * 64,
                     "/figalign/api/figures/1", "/figalign/compare"):
            resp = client.get(path)
            assert resp.status_code == 401, (path, resp.text)
    lazy.app.state.engine.dispose()
