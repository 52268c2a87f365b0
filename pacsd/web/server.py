"""uvicorn in a thread of the serving process (DESIGN.md, "HTTP"): the
app shares the process's Archive, and so its index writer and group
commit. The socket is bound here, not by uvicorn, so that worker
processes can share the port (SO_REUSEPORT) as they share the DICOM one,
and so that a port that cannot be bound fails start-up like that one.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from starlette.types import ASGIApp

GRACEFUL_SHUTDOWN = 10.0  # seconds requests in progress get on SIGTERM
STARTUP_TIMEOUT = 30.0


def bind(host: str, port: int, *, shared: bool) -> socket.socket:
    """A listening socket on (*host*, *port*); raises OSError."""
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY on an accepted
    # connection only if its proto says TCP; without it, an answer on a
    # kept-alive connection waited ~40 ms (Nagle against delayed ACK).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class HttpServer:
    def __init__(self, app: ASGIApp, sock: socket.socket) -> None:
        config = uvicorn.Config(
            app,
            log_config=None,  # uvicorn's loggers reach pacsd's through the root logger
            access_log=False,  # the app logs http_request itself
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN),
        )
        self.server = uvicorn.Server(config)
        self.sock = sock
        self.thread = threading.Thread(target=self._run, name="http", daemon=True)

    def start(self) -> None:
        """Serve; returns once uvicorn listens (RuntimeError if it could not)."""
        self.thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.sock.close()
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.01)

    def _run(self) -> None:
        # Not the main thread: uvicorn installs no signal handlers here; the
        # worker's SIGTERM handler calls stop().
        self.server.run(sockets=[self.sock])

    def stop(self) -> None:
        """Accept no more connections, let requests in progress finish."""
        self.server.should_exit = True
        self.thread.join(GRACEFUL_SHUTDOWN + 5)
        self.sock.close()
