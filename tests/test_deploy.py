"""docker-compose.yaml is consistent: services, environment contract, volumes and images.

No Docker engine runs here, so this checks the file itself; docs/operations.md says how to
run the stack.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from figalign.config import ENV_VARS

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW = ["airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
           "airflow-triggerer", "airflow-worker"]


def test_production_services_are_present():
    assert set(AIRFLOW) | {"postgres", "redis", "grobid", "vllm"} <= set(SERVICES)
    assert SERVICES["vllm"]["profiles"] == ["gpu"]
    assert SERVICES["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_images_are_pinned():
    for name, svc in SERVICES.items():
        image = svc.get("image", "")
        assert image and not image.endswith(":latest") or name.startswith("airflow"), (name, image)
        if not name.startswith("airflow"):
            assert re.search(r":[\w.-]*\d", image), f"{name} image {image!r} is not pinned to a version"


def test_airflow_services_share_config_and_use_celery():
    for name in AIRFLOW:
        env = SERVICES[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:"), name
        for var in ("FIGALIGN_DATABASE_URL", "FIGALIGN_DATA_DIR", "FIGALIGN_GROBID_URL", "FIGALIGN_VLLM_BASE_URL"):
            assert var in env, (name, var)
        assert "figalign-data:/opt/figalign/data" in SERVICES[name]["volumes"], name


def test_every_configuration_variable_is_passed_to_workers():
    env = SERVICES["airflow-worker"]["environment"]
    missing = [v for v in ENV_VARS if v not in env and v != "FIGALIGN_ARXIV_OAI_URL"
               and v not in ("FIGALIGN_ARXIV_BASE_URL", "FIGALIGN_PMC_BASE_URL")]
    assert missing == []


def test_volumes_and_dependencies_resolve():
    declared = set(COMPOSE["volumes"])
    for name, svc in SERVICES.items():
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, (name, source)
            else:
                assert (ROOT / source).exists(), (name, source)
        deps = svc.get("depends_on", {})
        for dep in deps:
            assert dep in SERVICES, (name, dep)


def test_init_migrates_both_databases_and_creates_pools_and_connections():
    script = "\n".join(SERVICES["airflow-init"]["command"])
    for step in ("airflow db migrate", "figalign db upgrade", "pools set grobid", "pools set vllm",
                 "pools set gpu", "connections add figalign_grobid", "connections add figalign_vllm"):
        assert step in script
    init_sql = (ROOT / "deploy" / "postgres-init.sql").read_text()
    assert "CREATE DATABASE figalign" in init_sql
    assert SERVICES["airflow-worker"]["environment"]["FIGALIGN_DATABASE_URL"].endswith("/figalign")
