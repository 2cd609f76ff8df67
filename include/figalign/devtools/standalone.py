"""`make airflow`: Airflow standalone with the project's DAGs, a fixed login and pools.

AIRFLOW_HOME lives inside the checkout (``airflow_home/``, git-ignored) so nothing leaks into
the user's home. The admin password is written before the first start (Airflow would
otherwise generate one), so the README can name it: admin / admin, or FIGALIGN_ADMIN_PASSWORD.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
POOLS = {"grobid": (4, "concurrent GROBID requests"), "vllm": (8, "tasks talking to the vLLM server"),
         "gpu": (1, "tasks holding a GPU for scoring")}


def airflow_env(home: Path, port: int = 8080) -> dict[str, str]:
    """Environment for every Airflow command of the local stack."""
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", "4"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        "FIGALIGN_DATA_DIR": env.get("FIGALIGN_DATA_DIR", str(ROOT / "data")),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "include"), str(ROOT / "plugins"),
                                                    env.get("PYTHONPATH")])),
    })
    return env


def prepare(home: Path, env: dict[str, str]) -> str:
    """Migrate Airflow's and figalign's databases, write the password, create the pools."""
    home.mkdir(parents=True, exist_ok=True)
    password = os.environ.get("FIGALIGN_ADMIN_PASSWORD", "admin")
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps({"admin": password}))
    airflow = str(Path(sys.executable).with_name("airflow"))
    figalign = str(Path(sys.executable).with_name("figalign"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([figalign, "db", "upgrade"], env=env, check=True)
    for name, (slots, about) in POOLS.items():
        subprocess.run([airflow, "pools", "set", name, str(slots), about], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    return password


def main() -> int:
    home = Path(os.environ.get("AIRFLOW_HOME_DIR", ROOT / "airflow_home"))
    port = int(os.environ.get("FIGALIGN_AIRFLOW_PORT", "8080"))
    env = airflow_env(home, port)
    password = prepare(home, env)
    print(f"\nAirflow UI: http://localhost:{port}/  login: admin / {password}\n"
          f"AIRFLOW_HOME={home}\n"
          f"stop it: Ctrl-C here, close this terminal, or `kill {os.getpid()}`: every Airflow process goes\n",
          flush=True)
    return run_group([str(Path(sys.executable).with_name("airflow")), "standalone"], env)


def run_group(cmd: list[str], env: dict[str, str] | None = None, grace_s: float = 20.0) -> int:
    """Run ``cmd`` in a process group of its own and take the whole group down with us.

    ``airflow standalone`` starts a dozen processes (scheduler, api-server, dag-processor,
    triggerer, executor workers); Ctrl-C, a closed terminal (SIGHUP) or a plain ``kill``
    (SIGTERM) of this process stops them all: SIGTERM to the group, SIGKILL after ``grace_s``.
    """
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def stop(signum, _frame):
        _stop_group(proc, grace_s)
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, stop)
    return proc.wait()


def _stop_group(proc: subprocess.Popen, grace_s: float) -> None:
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if not _group_alive(proc.pid):
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
