"""Worker processes: several pacsd processes serve one port.

Every association runs in a thread of one Python process, which the GIL
binds to one core; with many concurrent senders of large objects more
processes help (`[server] workers`). The supervisor forks `workers`
children after the archive is prepared; each builds its own acceptor and
index writer and binds the port with SO_REUSEPORT. SQLite's write lock
(BEGIN IMMEDIATE) orders the writers of all processes; the UNIQUE
constraints decide races between them exactly as between threads.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable

from pacsd import log

PR_SET_PDEATHSIG = 1
RESTART_PAUSE = 1.0  # seconds before a crashed worker is started again


def _die_with_parent() -> None:
    """A worker must not outlive a supervisor killed with SIGKILL: it would
    keep the port and keep serving beside the next start (Linux only)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _spawn(target: Callable[[], None]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        _die_with_parent()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        target()
    except BaseException:
        log.get().exception("worker_failed")
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


def supervise(count: int, target: Callable[[], None]) -> None:
    """Run *target* in *count* child processes until SIGINT/SIGTERM;
    restart a child that dies on its own."""
    logger = log.get()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    children: set[int] = set()
    signal.signal(signal.SIGINT, stop)  # before the first fork: no window
    signal.signal(signal.SIGTERM, stop)
    children.update(_spawn(target) for _ in range(count))
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        children.discard(pid)
        if not stopping:
            logger.error("worker_exited", worker=pid, status=os.waitstatus_to_exitcode(status))
            time.sleep(RESTART_PAUSE)
            if not stopping:
                children.add(_spawn(target))
