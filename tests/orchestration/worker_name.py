"""Airflow's ``[core] hostname_callable`` for test workers that share one machine.

Two Celery workers on one host would record the same hostname on every task instance;
each test worker is started with ``FIGALIGN_TEST_WORKER_NAME`` (w1, w2), as each would
have its own host name in a real cluster, so a test can tell which worker ran a task.
Imported by Airflow processes: keep it free of heavy imports.
"""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    return os.environ.get("FIGALIGN_TEST_WORKER_NAME") or socket.getfqdn()
