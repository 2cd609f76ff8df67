"""A budget per item: wall time, memory and temp disk, enforced in a child process.

Files written by strangers can be slow (a parser pushed into its worst case), huge (an
image just under the pixel cap) or hostile (an archive bomb). Limits inside each parser
catch what they can foresee; the budget catches the rest. A stage with a ``budget`` runs
each item's ``compute`` in a forked child process of its own:

* **wall time** — the parent waits at most ``wall_s`` and then kills the child's whole
  process group (Ghostscript and other helpers included);
* **memory** — the parent samples the child's resident memory every few milliseconds and
  kills it past ``memory_mb``; ``RLIMIT_AS`` (the address space at fork plus the budget)
  stops a single huge allocation between two samples;
* **temp disk** — the child's temporary files go to a private folder (``TMPDIR`` and
  ``tempfile.tempdir``) whose size the parent samples; ``RLIMIT_FSIZE`` bounds any one file.

The folder is removed whatever happened. An item over budget raises ``OverBudget`` (a
``PermanentError`` with a reason such as ``over-budget: wall 120 s``); the stage runner
retries it once and then quarantines it, and the other items of the batch are untouched.
A child that dies by a signal (a crash in a C library) is reported the same way.
Forking costs a few milliseconds per item (``bench/bench_hostile.py`` measures it).
"""

from __future__ import annotations

import errno
import os
import pickle
import resource
import select
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from figalign.errors import ConfigError, PermanentError

POLL_S = 0.01
MB = 1 << 20


class OverBudget(PermanentError):
    """An item used more wall time, memory or temp disk than its stage allows."""


@dataclass(frozen=True)
class Budget:
    """Limits for one item of one stage; ``FIGALIGN_<STAGE>_{WALL_S,MEMORY_MB,TMP_MB}`` override."""

    wall_s: float = 120.0
    memory_mb: int = 2048
    tmp_mb: int = 1024

    @classmethod
    def for_stage(cls, stage: str, env: Mapping[str, str] | None = None, **defaults: Any) -> "Budget":
        env = os.environ if env is None else env
        base = cls(**defaults)
        prefix = f"FIGALIGN_{stage.upper()}_"
        try:
            budget = cls(wall_s=float(env.get(prefix + "WALL_S", base.wall_s)),
                         memory_mb=int(env.get(prefix + "MEMORY_MB", base.memory_mb)),
                         tmp_mb=int(env.get(prefix + "TMP_MB", base.tmp_mb)))
        except ValueError as exc:
            raise ConfigError(f"{prefix}WALL_S / MEMORY_MB / TMP_MB must be numbers: {exc}") from exc
        if min(budget.wall_s, budget.memory_mb, budget.tmp_mb) <= 0:
            raise ConfigError(f"{prefix}WALL_S / MEMORY_MB / TMP_MB must be positive")
        return budget

    def image_pixel_cap(self) -> int:
        """Largest image a parser may decode within the memory budget.

        Decoding, mode conversion and PNG encoding hold about 16 bytes per pixel at their
        peak (measured: a 120 M-pixel PNG peaked at 1.9 GB), after ~400 MB for the process.
        """
        return max(1_000_000, (self.memory_mb - 400) * MB // 16)

    def archive_cap(self) -> int:
        """Bytes an archive may unpack to: half the temp disk (a gzipped tar is unpacked twice)."""
        return self.tmp_mb * MB // 2


@dataclass(frozen=True)
class Usage:
    """What the child used: wall seconds and peak resident memory (MB)."""

    wall_s: float
    peak_mb: float


def run_budgeted(fn: Callable[..., Any], args: tuple, budget: Budget, *, label: str,
                 setup: Callable[[], None] | None = None) -> tuple[Any, Usage]:
    """Run ``fn(*args)`` in a forked child within ``budget``; return (result, usage).

    The child's exception is raised here; going over budget raises ``OverBudget``.
    ``label`` names the item in reasons (never a temp path). Plain ``os.fork`` rather than
    ``multiprocessing``: it works inside daemonic workers (Celery) and starts in milliseconds.
    """
    tmp = Path(tempfile.mkdtemp(prefix="figalign-item-"))
    read_fd, write_fd = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child never returns from here
        os.close(read_fd)
        _child(write_fd, fn, args, budget, tmp, setup)
    os.close(write_fd)
    status: int | None = None
    try:
        data, over, peak, status = _watch(pid, read_fd, budget, tmp, started)
    finally:
        os.close(read_fd)
        if status is None:
            _kill(pid)
        shutil.rmtree(tmp, ignore_errors=True)
    usage = Usage(round(time.monotonic() - started, 3), round(peak / MB, 1))
    if over is not None:
        raise over
    if not data:
        how = f"signal {-os.waitstatus_to_exitcode(status)}" if status is not None and os.WIFSIGNALED(status) \
            else f"exit code {os.waitstatus_to_exitcode(status) if status is not None else '?'}"
        raise OverBudget(f"crashed: {label} ended by {how} without a result")
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value, usage


def _watch(pid: int, fd: int, budget: Budget, tmp: Path, started: float):
    """Read the child's message while sampling its memory and temp disk.

    Returns (message bytes, OverBudget or None, peak RSS, wait status or None if still running).
    """
    import psutil

    proc = psutil.Process(pid)
    chunks: list[bytes] = []
    peak, last_disk, eof = 0, 0.0, False
    while True:
        if eof:
            time.sleep(POLL_S)
        elif select.select([fd], [], [], POLL_S)[0]:
            chunk = os.read(fd, 1 << 20)
            eof = not chunk
            chunks.append(chunk)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks), None, peak, status
        peak = max(peak, _rss(proc))
        over = None
        if peak > budget.memory_mb * MB:
            over = OverBudget(f"over-budget: memory {budget.memory_mb} MB")
        elif time.monotonic() - started > budget.wall_s:
            over = OverBudget(f"over-budget: wall {budget.wall_s:g} s")
        elif time.monotonic() - last_disk > 0.1:
            last_disk = time.monotonic()
            if _disk_usage(tmp) > budget.tmp_mb * MB:
                over = OverBudget(f"over-budget: temp disk {budget.tmp_mb} MB")
        if over is not None:
            return b"", over, peak, _kill(pid)


def _rss(proc) -> int:
    """Resident memory of the child and its own children (Ghostscript …)."""
    import psutil

    try:
        total = proc.memory_info().rss
        for sub in proc.children(recursive=True):
            try:
                total += sub.memory_info().rss
            except psutil.Error:
                continue
        return total
    except psutil.Error:
        return 0


def _disk_usage(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _kill(pid: int) -> int:
    """End the child and everything it started (its own process group); return its wait status."""
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            continue  # no such group (yet) or already gone: try the process itself
    return os.waitpid(pid, 0)[1]


def _child(fd: int, fn, args, budget: Budget, tmp: Path, setup) -> None:
    """In the child: own process group, limits, private temp folder; send the result, exit."""
    code = 0
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file over the limit fails its write instead
        _limit(resource.RLIMIT_FSIZE, budget.tmp_mb * MB)
        _limit(resource.RLIMIT_AS, _address_space() + budget.memory_mb * MB)
        for var in ("TMPDIR", "TMP", "TEMP"):
            os.environ[var] = str(tmp)
        tempfile.tempdir = str(tmp)
        try:
            if setup is not None:
                setup()
            message = (True, fn(*args))
        except MemoryError:  # RLIMIT_AS refused an allocation
            message = (False, OverBudget(f"over-budget: memory {budget.memory_mb} MB"))
        except OSError as exc:
            over = exc.errno == errno.EFBIG  # RLIMIT_FSIZE refused a write
            message = (False, OverBudget(f"over-budget: temp disk {budget.tmp_mb} MB") if over else exc)
        except BaseException as exc:  # everything goes back to the parent, which decides
            message = (False, exc)
        data = _dumps(message)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:  # the parent reports a child that sent nothing as crashed
        code = 70
    finally:
        os._exit(code)  # no atexit handlers, no finalizers: the parent's connections stay intact


def _dumps(message) -> bytes:
    try:
        return pickle.dumps(message)
    except Exception as exc:  # an unpicklable result or exception still reaches the parent
        ok, value = message
        return pickle.dumps((False, PermanentError(
            f"{type(value).__name__}: {value}" if not ok else f"result could not be returned: {exc}")))


def _limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, hard))


def _address_space() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
