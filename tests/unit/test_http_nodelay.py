"""The HTTP socket pacsd binds itself must let asyncio set TCP_NODELAY on
each connection: without it, an answer on a kept-alive connection (a
header write, then a body write) waited ~40 ms for the client's delayed ACK."""

from __future__ import annotations

import asyncio
import socket

from pacsd.web.server import bind


def test_connections_accepted_on_the_bound_socket_have_nodelay() -> None:
    async def accepted_nodelay() -> int:
        sock = bind("127.0.0.1", 0, shared=False)
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = writer.get_extra_info("socket")
            seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(connected, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname())
            value = await asyncio.wait_for(seen, 10)
            writer.close()
        return value

    assert asyncio.run(accepted_nodelay()) != 0
