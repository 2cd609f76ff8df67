"""A real CeleryExecutor deployment started as plain processes, for tests.

What docker-compose runs, minus the containers: ``airflow scheduler``, ``dag-processor``,
``api-server`` and N ``airflow celery worker`` processes, with Redis as the broker (a db
number of the test's own, flushed before and after) and Postgres for Airflow's metadata and
Celery's results. Every process runs in a session of its own; stopping one takes its whole
process tree (a worker's task processes and their budgeted children have process groups of
their own, so they are collected as descendants with psutil, not by group).

Both workers share this machine, so each records its own name as task instances' hostname
(``tests.orchestration.worker_name``), as workers on separate hosts would.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_tree(pid: int, sig: int = signal.SIGKILL, timeout: float = 15.0) -> list[int]:
    """Stop a process and every descendant (whatever their process groups); return their pids.

    The tree is frozen first (SIGSTOP, then listed again), so nothing forks a child that the
    signal would miss.
    """
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    procs = [root, *root.children(recursive=True)]
    _each(procs, psutil.Process.suspend)
    procs = list({p.pid: p for p in [*procs, *_descendants(root)]}.values())

    def deliver(p: psutil.Process) -> None:
        p.send_signal(sig)
        if sig != signal.SIGKILL:
            p.resume()  # a stopped process acts on a catchable signal only once resumed

    _each(procs, deliver)
    _reap(procs, timeout)
    return [p.pid for p in procs]


def _each(procs: list[psutil.Process], action) -> None:
    """``action`` on every process that still exists (any may exit at any moment)."""
    for p in procs:
        try:
            action(p)
        except psutil.NoSuchProcess:
            pass


def _reap(procs: list[psutil.Process], timeout: float) -> None:
    """Wait up to ``timeout`` for ``procs`` to exit, then SIGKILL and reap what is left."""
    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    _each(alive, psutil.Process.kill)
    psutil.wait_procs(alive, timeout=5)


def _descendants(root: psutil.Process) -> list[psutil.Process]:
    try:
        return root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@dataclass
class Component:
    name: str
    proc: subprocess.Popen
    log: Path

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@dataclass
class CeleryCluster:
    """Configuration and processes of one test deployment (see the module docstring)."""

    home: Path
    metadata_url: str  # postgresql+psycopg2://... (Airflow's database, also Celery's results)
    broker_url: str  # redis://127.0.0.1:6379/<db>
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    components: dict[str, Component] = field(default_factory=dict)
    killed: set[str] = field(default_factory=set)
    password: str = "admin"

    def env(self, **more: str) -> dict[str, str]:
        env = dict(os.environ)
        backend = "db+" + self.metadata_url.replace("postgresql+psycopg2://", "postgresql://")
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": backend,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.orchestration.worker_name.worker_name",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins"), str(ROOT)]),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        })
        env.update(self.extra_env)
        env.update(more)
        return env

    def _secret(self, name: str) -> str:
        path = self.home / f".{name}-secret"
        if not path.exists():
            path.write_text(secrets.token_hex(48))
        return path.read_text()

    def migrate(self) -> None:
        """Airflow's metadata schema and the login (before any component starts)."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({"admin": self.password}))
        subprocess.run([AIRFLOW, "db", "migrate"], env=self.env(), check=True, capture_output=True, timeout=300)

    def start(self, name: str, *args: str, **env: str) -> Component:
        log = self.home / f"{name}.log"
        handle = open(log, "ab")
        proc = subprocess.Popen([AIRFLOW, *args], env=self.env(**env), stdout=handle, stderr=subprocess.STDOUT,
                                cwd=str(ROOT), start_new_session=True)
        handle.close()
        self.components[name] = Component(name, proc, log)
        return self.components[name]

    def start_all(self, workers: int = 2, concurrency: int = 2) -> None:
        self.start("api-server", "api-server", "--port", str(self.port))
        self.start("scheduler", "scheduler")
        self.start("dag-processor", "dag-processor")
        for n in range(1, workers + 1):
            self.start(f"w{n}", "celery", "worker", "--celery-hostname", f"w{n}@%h", "--concurrency",
                       str(concurrency), "--skip-serve-logs", "--without-gossip", "--without-mingle",
                       FIGALIGN_TEST_WORKER_NAME=f"w{n}")

    def check_alive(self, *names: str) -> None:
        """Raise (with its log) if a component exited that should not have (not ``kill``ed)."""
        for name in names or [n for n in self.components if n not in self.killed]:
            c = self.components[name]
            if c.proc.poll() is not None:
                raise RuntimeError(f"{name} exited (rc={c.proc.returncode}):\n{c.tail()}")

    def wait_ready(self, dag_ids: list[str], timeout: float = 180) -> float:
        """Until the API answers, the DAGs are parsed and every worker is ready; seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        todo = {"api": False, "dags": False, **{n: False for n in self.components if n.startswith("w")}}
        while not all(todo.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"components not ready after {timeout}s: {todo}\n" + self.tails())
            self.check_alive()
            if not todo["api"]:
                todo["api"] = self._api_up()
            if todo["api"] and not todo["dags"]:
                todo["dags"] = all(self.request("GET", f"/api/v2/dags/{d}", ok=(200, 404))[0] == 200
                                   for d in dag_ids)
            for name in [n for n, done in todo.items() if n.startswith("w") and not done]:
                todo[name] = " ready." in self.components[name].tail(20000)
            time.sleep(0.5)
        return time.monotonic() - started

    def _api_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/version", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    _token: str | None = None

    def request(self, method: str, path: str, body: dict | None = None, ok=(200,)) -> tuple[int, dict]:
        """One REST call as admin (JWT from /auth/token); raises unless the status is in ``ok``."""
        if self._token is None:
            _, reply = self._call("POST", "/auth/token", {"username": "admin", "password": self.password}, None,
                                  (200, 201))
            self._token = reply["access_token"]
        return self._call(method, path, body, self._token, ok)

    def _call(self, method, path, body, token, ok) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, text = r.status, r.read()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read()
        if status not in ok:
            raise RuntimeError(f"{method} {path} -> {status}: {text[:500]!r}")
        return status, (json.loads(text) if text else {})

    def kill(self, name: str) -> list[int]:
        """SIGKILL a component's whole process tree at once; return the pids killed."""
        c = self.components[name]
        self.killed.add(name)
        pids = kill_tree(c.proc.pid)
        c.proc.wait(timeout=10)
        return pids

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM every component's tree at once; SIGKILL what is left after ``grace_s``."""
        procs: list[psutil.Process] = []
        for c in self.components.values():
            try:
                root = psutil.Process(c.proc.pid)
                procs += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        _each(procs, psutil.Process.terminate)
        _reap(procs, grace_s)
        for c in self.components.values():
            c.proc.wait(timeout=5)

    def tails(self, n: int = 3000) -> str:
        return "\n".join(f"----- {c.name} -----\n{c.tail(n)}" for c in self.components.values())
