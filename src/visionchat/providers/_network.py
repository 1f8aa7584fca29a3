"""The sockets under httpx: asyncio streams instead of anyio's.

httpcore reaches the network through a small backend interface (connect,
read, write, start TLS, close).  Its default for asyncio goes through anyio,
which opens a cancel scope for every timeout and yields to the loop once more
on every read and write.  On a stream paced by the server, where each chunk
is a read of its own, that layering made visionchat cost 2.3-2.8x raw sync
httpx's CPU per chunk, against about 1.9x here (``benchmarks/bench_client.py``,
paced figures).  The time to first delta it leaves as it was, within about 1%
(``benchmarks/compare_client.py``).  So, as with
server-sent events, a measured exception to "use the library": the same interface over
asyncio's own streams, in under a hundred lines, used only for the clients
visionchat makes itself (never one passed in, never a proxy's).

It needs Python 3.11 (``asyncio.timeout``, ``StreamWriter.start_tls``); on
3.10 httpx keeps its own backend.  Errors are httpcore's, so httpx maps them
to its usual exceptions and nothing above this module can tell the difference.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
from httpcore._backends.base import SOCKET_OPTION, AsyncNetworkBackend, AsyncNetworkStream
from httpcore._utils import is_socket_readable

__all__ = ["AVAILABLE", "AsyncioBackend", "use_asyncio_streams"]

AVAILABLE = sys.version_info >= (3, 11)


@contextmanager
def _mapped(timeout_error: type[Exception], other: type[Exception]) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:
        raise timeout_error(str(exc) or "timed out") from exc
    except (OSError, EOFError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
        raise other(str(exc) or type(exc).__name__) from exc


class AsyncioStream(AsyncNetworkStream):
    """One connection: an asyncio reader and writer pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()

    async def aclose(self) -> None:
        # Not waiting for the peer: a TLS close_notify that never comes must
        # not hold up closing, and anyio's backend does not wait either.
        self._writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> AsyncNetworkStream:
        try:
            with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
                async with asyncio.timeout(timeout):
                    await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except BaseException:
            await self.aclose()
            raise
        return self

    def get_extra_info(self, info: str) -> Any:
        writer = self._writer
        if info == "ssl_object":
            return writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return writer.get_extra_info("sockname")
        if info == "server_addr":
            return writer.get_extra_info("peername")
        if info == "socket":
            return writer.get_extra_info("socket")
        if info == "is_readable":
            # The pool asks before reusing an idle connection: one the server
            # closed (or wrote to) must not carry the next request.  asyncio
            # reads eagerly, so the EOF or bytes may already sit in the reader.
            return (
                self._reader.at_eof()
                or writer.is_closing()
                or bool(getattr(self._reader, "_buffer", b""))
                or is_socket_readable(writer.get_extra_info("socket"))
            )
        return None


class AsyncioBackend(AsyncNetworkBackend):
    """httpcore's network backend over asyncio streams (see the module docstring)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    local_addr=(local_address, 0) if local_address else None,
                )
        _apply(writer, socket_options)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        _apply(writer, socket_options)
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _apply(writer: asyncio.StreamWriter, options: Iterable[SOCKET_OPTION] | None) -> None:
    sock: socket.socket | None = writer.get_extra_info("socket")
    for option in options or ():
        if sock is not None:
            sock.setsockopt(*option)


def use_asyncio_streams(client: Any) -> bool:
    """Give an httpx client made by visionchat this backend; True if it took.

    httpx does not take a network backend as an argument, so it is set on the
    client's connection pool; should a future httpx keep its pool elsewhere,
    the client simply keeps httpx's own backend (a test notices).
    """
    if not AVAILABLE:
        return False
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        return False
    pool._network_backend = AsyncioBackend()
    return True
