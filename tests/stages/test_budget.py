"""The per-item budget: wall time, memory, temp disk, crashes, and a child that outlives nothing."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest

from figalign.errors import ConfigError, PermanentError
from figalign.stages.budget import Budget, OverBudget, run_budgeted

SMALL = Budget(wall_s=2, memory_mb=300, tmp_mb=50)


def double(x):
    return x * 2, tempfile.gettempdir()


def sleep_long():
    time.sleep(30)


def grow_slowly():
    hoard = []
    for _ in range(100):
        hoard.append(bytearray(20 << 20))  # 20 MB at a time: the sampler sees it grow
        time.sleep(0.02)


def allocate_at_once():
    return len(bytearray(2 << 30))


def fill_disk():
    for i in range(100):
        with open(os.path.join(tempfile.gettempdir(), f"f{i}"), "wb") as fh:
            fh.write(b"x" * (5 << 20))
        time.sleep(0.01)


def segfault():
    os.kill(os.getpid(), signal.SIGSEGV)


def refuse():
    raise PermanentError("bad input: no figures")


def test_a_result_and_its_private_temp_folder():
    (value, tmp), usage = run_budgeted(double, (21,), SMALL, label="x")
    assert value == 42 and Path(tmp).name.startswith("figalign-item-") and not Path(tmp).exists()
    assert usage.wall_s < 2


@pytest.mark.parametrize("fn, reason", [
    (sleep_long, "over-budget: wall 2 s"),
    (grow_slowly, "over-budget: memory 300 MB"),
    (allocate_at_once, "over-budget: memory 300 MB"),
    (fill_disk, "over-budget: temp disk 50 MB"),
    (segfault, "crashed: paper 7 ended by signal 11"),
])
def test_going_over_is_stopped_with_its_reason(fn, reason):
    started = time.monotonic()
    with pytest.raises(OverBudget, match=reason):
        run_budgeted(fn, (), SMALL, label="paper 7")
    assert time.monotonic() - started < 10


def test_the_childs_own_errors_come_back_as_they_are():
    with pytest.raises(PermanentError, match="no figures"):
        run_budgeted(refuse, (), SMALL, label="x")


def test_the_child_dies_with_the_worker_that_forked_it(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    worker = os.fork()
    if worker == 0:  # a worker process that starts a budgeted item, then is killed
        try:
            run_budgeted(_record_pid_and_sleep, (str(pid_file),), Budget(wall_s=60), label="x")
        finally:
            os._exit(0)
    deadline = time.monotonic() + 10
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    grandchild = int(pid_file.read_text())
    os.kill(worker, signal.SIGKILL)
    os.waitpid(worker, 0)
    for _ in range(100):
        if not _alive(grandchild):
            break
        time.sleep(0.02)
    assert not _alive(grandchild)


def _record_pid_and_sleep(path: str):
    Path(path).write_text(str(os.getpid()))
    time.sleep(60)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_budget_from_environment():
    b = Budget.for_stage("parse", env={"FIGALIGN_PARSE_WALL_S": "30", "FIGALIGN_PARSE_MEMORY_MB": "1024"})
    assert (b.wall_s, b.memory_mb, b.tmp_mb) == (30, 1024, 1024)
    assert b.image_pixel_cap() == (1024 - 400) * 65536 and b.archive_cap() == 512 << 20
    with pytest.raises(ConfigError):
        Budget.for_stage("parse", env={"FIGALIGN_PARSE_WALL_S": "0"})
