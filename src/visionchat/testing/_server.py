"""The emulator's HTTP server, request records and fault injection.

A real HTTP/1.1 server on 127.0.0.1 (stdlib ``ThreadingHTTPServer``: no extra
dependency for users who test with it), one thread per connection, streams sent
with chunked transfer encoding and flushed per chunk, so clients see bytes as
they would from the service.  Faults are queued per path and consumed by the
next matching requests, which makes every failure reproducible in a test.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Emulator", "Fault", "JSONResponse", "RecordedRequest", "Request", "StreamResponse"]

FAULT_KINDS = (
    "status", "rate_limit", "html_error", "reset",  # before any byte
    "cut", "error_event", "stall", "slow", "duplicate_final",  # during a stream
)  # fmt: skip
_BEFORE = {"status", "rate_limit", "html_error", "reset"}
CHAT_PATHS = ("/api/chat-with-ai", "/api/features", "/v1/chat/completions")

_HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>{status} | api.1min.ai | Cloudflare</title></head>"
    "<body><h1>Error {status}</h1><p>The web server reported a bad gateway error.</p>"
    "<p>Ray ID: 8c1f2a3b4d5e6f70</p></body></html>"
)


@dataclass
class Fault:
    kind: str
    path: str | None
    times: int
    params: dict[str, Any]

    def matches(self, path: str) -> bool:
        if self.path is None:
            return path.startswith(CHAT_PATHS)
        return path.startswith(self.path)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    headers_without_key: dict[str, str]
    time: float
    files: tuple[str, ...] = ()  # multipart file names, for uploads
    client_port: int = 0  # the client's port: requests on one connection share it


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    client_port: int = 0
    json: Any = None


@dataclass
class JSONResponse:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamResponse:
    """A streamed answer: ``chunks`` in order, then ``tail`` (end events).

    ``error_chunk(message)`` renders an in-stream error for the framing;
    ``duplicate_chunk(text)`` the whole text again as a content chunk (the
    1min.ai quirk), or ``None`` where the framing has no such quirk.
    """

    content_type: str
    chunks: list[bytes]
    tail: list[bytes]
    error_chunk: Callable[[str], bytes]
    duplicate_chunk: Callable[[], bytes | None] = lambda: None


Route = Callable[["Emulator", Request], "JSONResponse | StreamResponse"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: Emulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (as clients under test do, on purpose) is not news."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError) and not self.emulator.verbose:
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    extra_headers: dict[str, str] = {}  # noqa: RUF012 (set per request, never mutated)
    # Send each chunk at once: with Nagle's algorithm a small first chunk on a
    # reused connection waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        if self.server.emulator.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self.server.emulator._handle(self)

    do_POST = do_GET
    do_DELETE = do_GET


class Emulator:
    """A local stand-in for the 1min.ai API and an OpenAI-compatible API.

    See the package docstring for a tour.  Thread-safe; every public attribute
    may be read or set while requests are served.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        port: int = 0,
        chunk_delay: float = 0.0,
        latency: float | tuple[float, float] = 0.0,
        rate_limit: int | None = None,
        rate_window: float = 60.0,
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        from . import _oneminai, _openai

        self.api_key = api_key
        self.chunk_delay = chunk_delay
        #: Seconds before a chat answer starts: a number, or (low, high) drawn
        #: uniformly per request (seeded, so a run is reproducible).
        self.latency = latency
        #: At most ``rate_limit`` API requests in any ``rate_window`` seconds
        #: (1min.ai documents 180 a minute); past it a 429 with Retry-After.
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        #: Whether a 429 says when to come back (the service does not promise to).
        self.rate_limit_retry_after = True
        self._random = random.Random(seed)
        self._accepted: collections.deque[float] = collections.deque()
        self.verbose = verbose
        self.legacy_mode = "stream"  # "stream" | "two_step" | "unsupported"
        self.next_answer: str | None = None
        self._port = port
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._routes: list[tuple[str, str, Route]] = [*_oneminai.ROUTES, *_openai.ROUTES]
        self.reset()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Emulator:
        if self._server is not None:
            return self
        self._stop.clear()
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.emulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name="visionchat-emulator", daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; streams that stall or crawl end at once."""
        self._stop.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running: call start() or use `with`")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        where = self.base_url if self._server else "stopped"
        return f"Emulator({where}, {len(self.requests)} requests)"

    # -- state -------------------------------------------------------------

    def reset(self) -> None:
        """Forget faults, records, uploads and conversations (between tests)."""
        with self._lock:
            self.requests: list[RecordedRequest] = []
            self.uploads: dict[str, bytes] = {}
            self.conversations: dict[str, dict[str, Any]] = {}
            self.records: dict[str, dict[str, Any]] = {}
            self.pending_streams: dict[str, str] = {}
            self.billed_turns = 0
            self.credits_billed = 0
            self.throttled = 0  # requests refused with a 429 by the rate limit
            self._accepted.clear()
            self._faults: list[Fault] = []
            self.next_answer = None
            self.legacy_mode = "stream"

    def add_fault(self, kind: str, path: str | None = None, times: int = 1, **params: Any) -> None:
        """Give the next ``times`` requests matching ``path`` this fault.

        ``path=None`` matches the chat endpoints (both 1min.ai generations and
        ``/v1/chat/completions``); otherwise any path starting with ``path``.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._faults.append(Fault(kind, path, times, params))

    def _take_faults(self, path: str) -> list[Fault]:
        taken = []
        with self._lock:
            for f in self._faults:
                if f.times > 0 and f.matches(path):
                    f.times -= 1
                    taken.append(f)
            self._faults = [f for f in self._faults if f.times > 0]
        return taken

    def take_answer(self, default: str) -> str:
        with self._lock:
            answer, self.next_answer = self.next_answer, None
        return default if answer is None else answer

    def bill(self, credits: int) -> None:
        with self._lock:
            self.billed_turns += 1
            self.credits_billed += credits

    # -- serving -----------------------------------------------------------

    def _handle(self, h: _Handler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        req = Request(
            h.command,
            parts.path,
            dict(parse_qsl(parts.query)),
            headers,
            body,
            client_port=int(h.client_address[1]),
        )
        if "json" in headers.get("content-type", "") and body:
            try:
                req.json = json.loads(body)
            except ValueError:
                req.json = None
        self._record(req)
        h.extra_headers = {}
        if self._over_rate_limit(h, req):
            return
        faults = self._take_faults(req.path)
        for f in faults:
            if f.kind in _BEFORE:
                self._fail_before(h, f)
                return
        route = self._route(req)
        if route is None:
            self._send_json(h, JSONResponse(404, {"message": f"Cannot {req.method} {req.path}"}))
            return
        if req.path.startswith(CHAT_PATHS):
            self._wait_latency()
        try:
            resp = route(self, req)
        except Exception as exc:  # an emulator bug must show, not hang the client
            self._send_json(h, JSONResponse(500, {"message": f"emulator error: {exc!r}"}))
            raise
        if isinstance(resp, JSONResponse):
            self._send_json(h, resp)
        else:
            self._stream(h, resp, [f for f in faults if f.kind not in _BEFORE])

    def _over_rate_limit(self, h: _Handler, req: Request) -> bool:
        """Refuse a request past the sliding-window limit (answered here); else count it."""
        limit = self.rate_limit
        if not limit or not req.path.startswith(("/api/", "/v1/", "/models")):
            return False
        now = time.monotonic()
        with self._lock:
            window = self._accepted
            while window and window[0] <= now - self.rate_window:
                window.popleft()
            refused = len(window) >= limit
            if refused:
                self.throttled += 1
                wait = window[0] + self.rate_window - now
            else:
                window.append(now)
            remaining = max(0, limit - len(window))
            reset = (window[0] + self.rate_window - now) if window else 0.0
        if req.path.startswith("/v1/"):  # OpenAI-style servers say their limits
            h.extra_headers = {
                "x-ratelimit-limit-requests": str(limit),
                "x-ratelimit-remaining-requests": str(remaining),
                "x-ratelimit-reset-requests": f"{max(reset, 0.0):.3f}s",
            }
        if not refused:
            return False
        headers: dict[str, str] = {}
        if self.rate_limit_retry_after:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        body = {"message": "Too many requests, please slow down."}
        self._send_json(h, JSONResponse(429, body, headers))
        return True

    def _wait_latency(self) -> None:
        latency = self.latency
        if isinstance(latency, tuple):
            with self._lock:
                delay = self._random.uniform(*latency)
        else:
            delay = float(latency)
        if delay > 0:
            self._stop.wait(delay)

    def _record(self, req: Request) -> None:
        secret = {"api-key", "authorization"}
        files: tuple[str, ...] = ()
        if req.headers.get("content-type", "").startswith("multipart/"):
            from ._oneminai import multipart_files

            files = tuple(name for _, name, _ in multipart_files(req))
        rec = RecordedRequest(
            method=req.method,
            path=req.path,
            query=req.query,
            json=req.json,
            headers_without_key={k: v for k, v in req.headers.items() if k not in secret},
            time=time.monotonic(),
            files=files,
            client_port=req.client_port,
        )
        with self._lock:
            self.requests.append(rec)

    def _route(self, req: Request) -> Route | None:
        for method, prefix, route in self._routes:
            if req.method != method:
                continue
            if (prefix.endswith("/") and req.path.startswith(prefix)) or req.path == prefix:
                return route
        return None

    # -- writing -----------------------------------------------------------

    def _send_json(self, h: _Handler, resp: JSONResponse) -> None:
        payload = b"" if resp.status == 204 else json.dumps(resp.body).encode()
        self._send_plain(h, resp.status, "application/json", payload, resp.headers)

    def _send_plain(
        self, h: _Handler, status: int, kind: str, payload: bytes, headers: dict[str, str]
    ) -> None:
        with contextlib.suppress(OSError):
            h.send_response(status)
            h.send_header("Content-Type", kind)
            h.send_header("Content-Length", str(len(payload)))
            for k, v in {**h.extra_headers, **headers}.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(payload)
            h.wfile.flush()

    def _fail_before(self, h: _Handler, f: Fault) -> None:
        if f.kind == "reset":
            # An RST before any byte: SO_LINGER with a zero timeout, then close.
            with contextlib.suppress(OSError):
                h.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                h.connection.close()
            h.close_connection = True
            return
        if f.kind == "rate_limit":
            headers = {}
            ra = f.params.get("retry_after")
            if isinstance(ra, int | float):
                headers["Retry-After"] = f"{ra:g}"
            elif ra == "date":
                headers["Retry-After"] = formatdate(time.time() + 1, usegmt=True)
            elif isinstance(ra, str):
                headers["Retry-After"] = ra
            body = {"message": "Too many requests, please slow down."}
            self._send_json(h, JSONResponse(429, body, headers))
            return
        if f.kind == "html_error":
            status = int(f.params.get("status", 502))
            page = _HTML_PAGE.format(status=status).encode()
            self._send_plain(h, status, "text/html; charset=UTF-8", page, {})
            return
        status = int(f.params.get("status", 500))
        body = f.params.get("body") or {"message": "Internal server error"}
        self._send_json(h, JSONResponse(status, body, dict(f.params.get("headers") or {})))

    def _stream(self, h: _Handler, resp: StreamResponse, faults: list[Fault]) -> None:
        kinds = {f.kind: f.params for f in faults}
        chunks = list(resp.chunks)
        if "duplicate_final" in kinds:
            dup = resp.duplicate_chunk()
            if dup is not None:
                chunks.append(dup)
        delay = self.chunk_delay
        if "slow" in kinds:
            delay = 1.0 / float(kinds["slow"].get("tokens_per_second", 5))

        def write(data: bytes) -> None:
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        try:
            h.send_response(200)
            h.send_header("Content-Type", resp.content_type)
            h.send_header("Cache-Control", "no-cache")
            h.send_header("Transfer-Encoding", "chunked")
            for k, v in h.extra_headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.flush()
            for i, chunk in enumerate(chunks):
                stall = kinds.get("stall")
                if (
                    stall is not None
                    and i == int(stall.get("after_chunks", 0))
                    and self._stop.wait(float(stall.get("seconds", 30)))
                ):
                    break
                if "cut" in kinds and i == int(kinds["cut"].get("after_chunks", 3)):
                    self._drop(h)
                    return
                if "error_event" in kinds and i == int(kinds["error_event"].get("after_chunks", 2)):
                    message = str(kinds["error_event"].get("message", "The model failed."))
                    write(resp.error_chunk(message))
                    break
                if i and delay and self._stop.wait(delay):
                    break
                write(chunk)
            else:
                for chunk in resp.tail:
                    write(chunk)
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except OSError:
            h.close_connection = True

    @staticmethod
    def _drop(h: _Handler) -> None:
        """Close mid-body, with no terminating chunk: the client sees a broken stream."""
        with contextlib.suppress(OSError):
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
        h.close_connection = True
