"""A budget per item: wall time, memory and temp disk, enforced in a child process.

Files written by strangers can be slow (a parser pushed into its worst case), huge (an
image just under the pixel cap) or hostile (an archive bomb). Limits inside each parser
catch what they can foresee; the budget catches the rest. A stage with a ``budget`` runs
each item's ``compute`` in a forked child process of its own:

* **wall time** — the parent waits at most ``wall_s`` and then kills the child's whole
  process group (Ghostscript and other helpers included);
* **memory** — the parent samples the memory the child adds to what it shared with the
  worker at fork (resident pages, helpers such as Ghostscript included) every few
  milliseconds and kills it past ``memory_mb``; ``RLIMIT_AS`` (the address space at fork
  plus the budget) stops a single huge allocation between two samples;
* **temp disk** — the child's temporary files go to a private folder (``TMPDIR`` and
  ``tempfile.tempdir``) whose size the parent samples; ``RLIMIT_FSIZE`` bounds any one file.

The folder is removed whatever happened. An item over budget raises ``OverBudget`` (a
``PermanentError`` with a reason such as ``over-budget: wall 120 s``); the stage runner
retries it once and then quarantines it, and the other items of the batch are untouched.
A child that dies by a signal (a crash in a C library) is reported the same way.
Forking costs a few milliseconds per item (``bench/bench_hostile.py`` measures it).
"""

from __future__ import annotations

import ctypes
import errno
import gc
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
PAGE = os.sysconf("SC_PAGE_SIZE")
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded once, in the parent: forked children inherit it


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
    """Run ``fn(*args)`` once in a forked child within ``budget``; return (result, usage)."""
    with BudgetedRunner(fn, budget, setup=setup) as runner:
        return runner.run(args, label=label)


class BudgetedRunner:
    """Runs ``fn(*args)`` item after item in a forked child, each item within ``budget``.

    One child serves a whole batch: forking per item cost ~25 ms of CPU per paper in
    copy-on-write page copies (bench/bench_hostile.py, budget overhead), so the child is
    forked once and reused while its items stay within budget. A child that went over, or
    crashed, or grew past half the memory budget, is replaced by a fresh one for the next
    item. Each item gets its own temp folder, removed when the item ends. Plain
    ``os.fork`` rather than ``multiprocessing``: it works inside daemonic workers (Celery).
    """

    def __init__(self, fn: Callable[..., Any], budget: Budget, *, setup: Callable[[], None] | None = None):
        self.fn, self.budget, self.setup = fn, budget, setup
        self.pid: int | None = None
        self.base = 0
        self._to_child = self._from_child = -1

    def __enter__(self) -> "BudgetedRunner":
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    def run(self, args: tuple, *, label: str) -> tuple[Any, Usage]:
        """One item: its result and usage; its own error; or ``OverBudget``."""
        if self.pid is None:
            self._start()
        tmp = Path(tempfile.mkdtemp(prefix="figalign-item-"))
        started = time.monotonic()
        try:
            _send(self._to_child, pickle.dumps((str(tmp), args)))
            data, over, peak, status = _watch(self.pid, self._from_child, self.budget, tmp, started, self.base)
        except BrokenPipeError:
            data, over, peak, status = b"", None, 0, _kill(self.pid)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        usage = Usage(round(time.monotonic() - started, 3), round(peak / MB, 1))
        if over is not None or not data:
            self._forget(status)
        if over is not None:
            raise over
        if not data:
            raise OverBudget(f"crashed: {label} ended by {_how(status)} without a result")
        if peak > self.budget.memory_mb * MB // 2:
            self._stop()  # grown: the next item starts in a fresh child
        ok, value = pickle.loads(data)
        if not ok:
            raise value
        return value, usage

    def _start(self) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        gc.freeze()  # collections in the child skip the worker's objects: fewer page copies
        self.base = _rss(os.getpid())  # the child starts with the worker's pages; it is charged for what it adds
        pid = os.fork()
        if pid == 0:  # the child never returns from here
            os.close(self._to_child)
            os.close(self._from_child)
            _child(to_child_r, from_child_w, self.fn, self.budget, self.setup)
        gc.unfreeze()
        os.close(to_child_r)
        os.close(from_child_w)
        self.pid = pid

    def _stop(self) -> None:
        """Let the child finish (end of its requests), or kill it if it does not."""
        if self.pid is None:
            return
        os.close(self._to_child)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.005)
        else:
            _kill(self.pid)
        os.close(self._from_child)
        self.pid = None

    def _forget(self, status: int | None) -> None:
        """The child is dead (killed or crashed): drop it; the next item forks a new one."""
        if status is None:
            _kill(self.pid)
        for fd in (self._to_child, self._from_child):
            os.close(fd)
        self.pid = None


def _how(status: int | None) -> str:
    if status is not None and os.WIFSIGNALED(status):
        return f"signal {-os.waitstatus_to_exitcode(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status) if status is not None else '?'}"


def _send(fd: int, data: bytes) -> None:
    view = memoryview(len(data).to_bytes(8, "big") + data)
    while view:
        view = view[os.write(fd, view):]


def _recv_exact(fd: int, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _watch(pid: int, fd: int, budget: Budget, tmp: Path, started: float, base: int = 0):
    """Wait for the child's answer to one item while sampling its memory and temp disk.

    Memory is what the child adds to the resident pages it shared with the worker at fork
    (``base``): pages it merely reads stay the worker's. Returns (answer bytes, OverBudget or
    None, peak added memory, wait status if the child died).
    The child's own RSS is read from /proc every 10 ms (cheap); its helpers (Ghostscript) and
    the temp folder every 100 ms, as those walks cost more.
    """
    peak, helpers, last_slow = 0, 0, started
    while True:
        if select.select([fd], [], [], POLL_S)[0]:
            head = _recv_exact(fd, 8)
            body = _recv_exact(fd, int.from_bytes(head, "big")) if head else None
            if body is not None:
                return body, None, peak, None
            return b"", None, peak, os.waitpid(pid, 0)[1]  # the child died mid-answer or before it
        over, now = None, time.monotonic()
        if now - last_slow > 0.1:
            last_slow = now
            helpers = _helpers_rss(pid)
            if _disk_usage(tmp) > budget.tmp_mb * MB:
                over = OverBudget(f"over-budget: temp disk {budget.tmp_mb} MB")
        peak = max(peak, _rss(pid) - base + helpers)
        if peak > budget.memory_mb * MB:
            over = OverBudget(f"over-budget: memory {budget.memory_mb} MB")
        elif now - started > budget.wall_s:
            over = OverBudget(f"over-budget: wall {budget.wall_s:g} s")
        if over is not None:
            return b"", over, peak, _kill(pid)


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _helpers_rss(pid: int) -> int:
    """Resident memory of the processes the child started (Ghostscript …)."""
    import psutil

    total = 0
    try:
        for sub in psutil.Process(pid).children(recursive=True):
            try:
                total += sub.memory_info().rss
            except psutil.Error:
                continue
    except psutil.Error:
        return 0
    return total


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


def _child(requests: int, answers: int, fn, budget: Budget, setup) -> None:
    """In the child: own process group, limits; answer items until the worker closes the pipe."""
    code = 0
    try:
        parent = os.getppid()
        _die_with_parent(parent)
        os.setpgid(0, 0)
        _default_signals()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file over the limit fails its write instead
        _limit(resource.RLIMIT_FSIZE, budget.tmp_mb * MB)
        _limit(resource.RLIMIT_AS, _address_space() + budget.memory_mb * MB)
        if setup is not None:
            setup()
        while (head := _recv_exact(requests, 8)) is not None:
            tmp, args = pickle.loads(_recv_exact(requests, int.from_bytes(head, "big")))
            _send(answers, _dumps(_answer(fn, args, tmp, budget)))
    except BaseException:  # the worker reports a child that sent nothing as crashed
        code = 70
    finally:
        os._exit(code)  # no atexit handlers, no finalizers: the worker's connections stay intact


def _answer(fn, args, tmp: str, budget: Budget) -> tuple[bool, Any]:
    """(True, result) or (False, exception) of one item, with its temp folder as TMPDIR."""
    for var in ("TMPDIR", "TMP", "TEMP"):
        os.environ[var] = tmp
    tempfile.tempdir = tmp
    try:
        return True, fn(*args)
    except MemoryError:  # RLIMIT_AS refused an allocation
        return False, OverBudget(f"over-budget: memory {budget.memory_mb} MB")
    except OSError as exc:
        if exc.errno == errno.EFBIG:  # RLIMIT_FSIZE refused a write
            return False, OverBudget(f"over-budget: temp disk {budget.tmp_mb} MB")
        return False, exc
    except BaseException as exc:  # everything goes back to the worker, which decides
        return False, exc


def _dumps(message) -> bytes:
    try:
        return pickle.dumps(message)
    except Exception as exc:  # an unpicklable result or exception still reaches the parent
        ok, value = message
        return pickle.dumps((False, PermanentError(
            f"{type(value).__name__}: {value}" if not ok else f"result could not be returned: {exc}")))


def _default_signals() -> None:
    """The worker's handlers (Airflow logs SIGSEGV and carries on; it turns SIGTERM into an
    exception) must not keep a crashed or stopped child alive: the child dies as a process."""
    import faulthandler

    faulthandler.disable()
    for sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT, signal.SIGTERM,
                signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


def _die_with_parent(parent: int) -> None:
    """SIGKILL this child when the worker that forked it dies (Linux ``PR_SET_PDEATHSIG``).

    The child has its own process group, so killing the worker's group would not reach it;
    without this, a worker killed mid-item would leave its item's child running unbudgeted.
    """
    _LIBC.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the worker died before the request took effect
        os._exit(71)


def _limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, hard))


def _address_space() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
