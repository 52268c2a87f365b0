"""The listening socket and the threads that serve its connections.

Each connection is served, start to end, by the thread that accepted it.
Threads wait in ``accept()`` themselves, so the kernel hands a new
connection straight to a waiting thread: no selector wake-up, no thread
started for it (a thread per connection from a selector loop was a third
of the time to open an association). Whenever the last waiting thread
takes a connection it starts another; a thread that finishes its
association goes back to waiting, unless enough already wait.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

Serve = Callable[[socket.socket, tuple[str, int]], None]

IDLE_THREADS = 4  # waiting in accept() beyond these, a finished thread ends


class Listener:
    def __init__(self, address: tuple[str, int], serve: Serve, *, shared: bool) -> None:
        """Bind *address* (raising OSError if it cannot) and listen; *shared*
        lets worker processes bind the same port (SO_REUSEPORT)."""
        self.serve = serve
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # Like any DICOM server: connections in TIME_WAIT do not block a restart.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if shared:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            self.sock.bind(address)
            self.sock.listen(128)
        except OSError:
            self.sock.close()
            raise
        self._lock = threading.Lock()
        self._waiting = 0
        self._stopping = threading.Event()

    def start(self) -> None:
        self._spawn()

    def stop(self) -> None:
        """Accept no more connections; associations in progress carry on
        (their threads are daemons)."""
        self._stopping.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked in accept() (Linux)
        except OSError:
            pass
        self.sock.close()

    def _spawn(self) -> None:
        with self._lock:
            self._waiting += 1
        threading.Thread(target=self._accept_loop, name="association", daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                # Blocking, no timeout: the kernel wakes one waiting thread per
                # connection (polling threads would all wake, and contend).
                conn, address = self.sock.accept()
            except OSError:
                if self._stopping.is_set():
                    break
                time.sleep(0.01)  # the peer reset before we accepted, or no file descriptors left
                continue
            with self._lock:
                self._waiting -= 1
                last = self._waiting == 0
            if last:
                self._spawn()
            self.serve(conn, address)
            with self._lock:
                if self._waiting >= IDLE_THREADS:
                    return
                self._waiting += 1
        with self._lock:
            self._waiting -= 1
