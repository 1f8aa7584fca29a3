"""The asyncio network backend under visionchat's httpx clients, over real sockets.

The emulator suites already run every provider over it (timeouts, cut and
reset streams, cancellation); here are the parts they do not reach: that the
clients visionchat makes really use it, TLS, a refused or never-answered
connection, and an idle connection the server closed.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import trustme

from visionchat.conversation import Conversation
from visionchat.providers import _http
from visionchat.providers._network import AsyncioBackend, use_asyncio_streams
from visionchat.providers.openai import OpenAIProvider
from visionchat.testing import Emulator


def backend_of(client: httpx.AsyncClient) -> object:
    return client._transport._pool._network_backend  # type: ignore[attr-defined]


def test_the_clients_visionchat_makes_use_it(emulator: Emulator, emulator_api_key: str) -> None:
    # A future httpx that keeps its pool elsewhere would silently fall back to
    # its own backend: this notices.
    own = _http.new_client()
    assert isinstance(backend_of(own), AsyncioBackend)
    asyncio.run(own.aclose())
    conv = Conversation(
        model="gpt-4o",
        provider="openai",
        api_key=emulator_api_key,
        base_url=emulator.base_url + "/v1",
    )
    assert conv.ask("hello", show=False).text
    shared = list(_http._ENGINE_CLIENTS.values())
    assert shared and all(isinstance(backend_of(c), AsyncioBackend) for c in shared)


def test_a_client_passed_in_is_left_as_it_is() -> None:
    async def go() -> object:
        async with httpx.AsyncClient() as client:
            OpenAIProvider("k", base_url="http://127.0.0.1:9/v1", http_client=client)
            return backend_of(client)

    assert not isinstance(asyncio.run(go()), AsyncioBackend)


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"hello from port {self.client_address[1]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve(wrap: ssl.SSLContext | None = None) -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    if wrap is not None:
        httpd.socket = wrap.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def client(**kw: Any) -> httpx.AsyncClient:
    c = httpx.AsyncClient(**{"timeout": 5, **kw})
    assert use_asyncio_streams(c)
    return c


def test_tls_with_a_trusted_certificate_and_a_wrong_host() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def go(port: int) -> tuple[str, str | None, BaseException]:
        async with client(verify=client_ctx) as c:
            ok = await c.get(f"https://localhost:{port}/")
            version = ok.extensions["network_stream"].get_extra_info("ssl_object").version()
            try:
                await c.get(f"https://127.0.0.1:{port}/")  # the certificate names localhost
            except httpx.ConnectError as exc:
                return ok.text, version, exc
            raise AssertionError("a certificate for another host was accepted")

    with serve(server_ctx) as port:
        text, version, wrong = asyncio.run(go(port))
    assert text.startswith("hello from port")
    assert version in ("TLSv1.2", "TLSv1.3")
    assert "certificate" in str(wrong).lower() or "CERTIFICATE" in repr(wrong.__cause__)


def test_refused_and_unanswered_connections_fail_cleanly() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    listener = socket.socket()  # accepts (in the kernel) but never speaks
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    async def go() -> tuple[BaseException, BaseException]:
        async with client(timeout=httpx.Timeout(5, read=0.3)) as c:
            with pytest.raises(httpx.ConnectError) as refused:
                await c.get(f"http://127.0.0.1:{closed_port}/")
            with pytest.raises(httpx.ReadTimeout) as silent:
                await c.get(f"http://127.0.0.1:{listener.getsockname()[1]}/")
            return refused.value, silent.value

    try:
        refused, silent = asyncio.run(go())
    finally:
        listener.close()
    # httpx's errors, carrying the socket's own words
    assert "refused" in str(refused).lower() or "111" in str(refused)
    assert isinstance(silent, httpx.ReadTimeout)


def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    """The pool asks ``is_readable`` before reusing a connection; a server that
    closed it meanwhile must cost a new connection, not a failed request."""
    served: list[int] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve_and_hang_up() -> None:
        for _ in range(2):
            conn, addr = listener.accept()
            served.append(addr[1])
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            conn.close()  # keep-alive promised, then the server hangs up

    threading.Thread(target=serve_and_hang_up, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"

    async def go() -> list[str]:
        async with client() as c:
            first = await c.get(url)
            await asyncio.sleep(0.2)  # the hang-up reaches the client
            second = await c.get(url)
            return [first.text, second.text]

    try:
        assert asyncio.run(go()) == ["ok", "ok"]
    finally:
        listener.close()
    assert len(served) == 2 and served[0] != served[1]
