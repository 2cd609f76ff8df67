"""`make airflow`'s launcher stops its whole process group on Ctrl-C, SIGHUP or SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

CHILDREN = "sleep 120 & sleep 120 & trap '' TERM; sleep 120"  # one child even ignores SIGTERM


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_closing_the_terminal_stops_every_process(sig, tmp_path):
    script = ("import sys; from figalign.devtools.standalone import run_group; "
              f"sys.exit(run_group(['bash', '-c', {CHILDREN!r}], grace_s=1.0))")
    launcher = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    group = _wait_for_group(launcher.pid)
    os.kill(launcher.pid, sig)
    assert launcher.wait(timeout=20) == 128 + sig
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(group):
        time.sleep(0.05)
    assert not _alive(group), "processes of the group survived"


def _wait_for_group(launcher_pid: int) -> int:
    """The process group the launcher started (its child's pid), once its three sleeps run."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = subprocess.run(["ps", "-eo", "pid,ppid,pgid,comm"], capture_output=True, text=True).stdout.split("\n")
        rows = [line.split() for line in out[1:] if line.strip()]
        kids = [r for r in rows if r[1] == str(launcher_pid)]
        if kids and sum(1 for r in rows if r[2] == kids[0][0] and r[3] == "sleep") == 3:
            return int(kids[0][0])
        time.sleep(0.05)
    raise AssertionError("the group did not start")


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
