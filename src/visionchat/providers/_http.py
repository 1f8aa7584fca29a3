"""What every HTTP backend shares: timeouts, retries, and reading error bodies.

Retrying is only safe before an answer has started: a streamed turn that broke
off after its first byte has been billed, and sending it again would bill it
twice.  So the retry loop here wraps *obtaining a response* (status and headers)
and nothing after; a failure while reading the body is the caller's to report.
Retries follow tenacity with exponential backoff and full jitter, honour a
``Retry-After`` header (seconds or an HTTP date), and are bounded both in
attempts and in total time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from .._secret import Secret
from ..engine import get_engine
from ..errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ModelNotFoundError,
    OutOfCreditsError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
)
from ._network import use_asyncio_streams

if TYPE_CHECKING:
    from ..ratelimit import RateLimiter

__all__ = [
    "DEFAULT_TIMEOUT",
    "ClientSource",
    "RetryPolicy",
    "Service",
    "error_from_response",
    "finish_body",
    "make_timeout",
    "message_of",
    "new_client",
    "parse_reset",
    "parse_retry_after",
    "send",
    "stream_blocks",
    "stream_error",
]

# Connect quickly or fail; between two chunks of a stream, allow a slow model.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
_CREDIT_WORDS = re.compile(r"credit|quota|balance|insufficient|billing|payment", re.I)


def make_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(float(timeout), connect=min(10.0, float(timeout)))


# The engine's one client per loop (a forked child gets a new loop, so a new client).
_ENGINE_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def _engine_client() -> httpx.AsyncClient | None:
    """The engine's shared client when called on the engine's loop, else None."""
    engine = get_engine()
    if not engine.in_thread():
        return None
    loop = asyncio.get_running_loop()
    client = _ENGINE_CLIENTS.get(loop)
    if client is None or client.is_closed:
        client = new_client()
        _ENGINE_CLIENTS[loop] = client
        engine.register_closeable(client)
    return client


def new_client() -> httpx.AsyncClient:
    """A client as visionchat makes them: default timeouts, asyncio's own sockets."""
    client = httpx.AsyncClient(timeout=DEFAULT_TIMEOUT)
    use_asyncio_streams(client)
    return client


class ClientSource:
    """Which ``httpx.AsyncClient`` a provider's requests go through.

    A client made per provider cost the first turn of every new Conversation
    (every widget, every batch) its own TLS context and a new connection: 35 ms
    to the first delta in the client benchmark, over loopback HTTP, against
    2.1 ms on a shared client; a real service adds TCP and TLS handshakes to
    that.  On the engine, where all of visionchat's requests run, every
    provider shares one client, so its pool and TLS context serve them all; a
    provider used on another loop (a test's ``asyncio.run``) gets a client of
    its own, closed with the provider.  A client the user passed in is used as
    it is and never closed here.
    Timeouts stay per provider: they travel with each request, and without
    one a given client keeps its own.
    """

    __slots__ = ("_given", "_own", "_timeout")

    def __init__(
        self,
        given: httpx.AsyncClient | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> None:
        self._given = given
        self._own: httpx.AsyncClient | None = None
        self._timeout: Any = (
            httpx.USE_CLIENT_DEFAULT
            if timeout is None and given is not None
            else make_timeout(timeout)
        )

    def build_request(self, method: str, url: str, **kw: Any) -> httpx.Request:
        return self.get().build_request(method, url, timeout=self._timeout, **kw)

    def get(self) -> httpx.AsyncClient:
        if self._given is not None:
            return self._given
        if (shared := _engine_client()) is not None:
            return shared
        if self._own is None or self._own.is_closed:
            self._own = new_client()
        return self._own

    async def aclose(self) -> None:
        if self._own is not None:
            await self._own.aclose()
            self._own = None


def stream_blocks(response: httpx.Response) -> AsyncIterator[bytes]:
    """A streamed body's byte blocks, without httpx's decoding layer when there is none.

    ``aiter_bytes`` runs every block through a decoder and a re-chunker, one
    more async generator per block; for an event stream sent without a
    ``Content-Encoding`` (as the services send them) both do nothing, and
    skipping them took about 5% off the CPU time per chunk.  A compressed body
    is still decoded.
    """
    encoding = response.headers.get("content-encoding", "").strip().lower()
    return response.aiter_raw() if encoding in ("", "identity") else response.aiter_bytes()


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up on getting an answer started."""

    max_retries: int = 3
    backoff: float = 0.5  # first wait, doubled each time, with jitter
    max_backoff: float = 20.0
    max_total: float = 90.0  # seconds across all attempts
    max_retry_after: float = 60.0  # a longer server hint is not waited for
    # With a rate limiter, a 429 is waited out and re-sent outside the attempts
    # above (nothing is lost to throttling); this bounds that waiting.
    max_throttled: float = 600.0


@dataclass(frozen=True)
class Service:
    """How a backend names itself in messages, and how to fix its key."""

    name: str  # "1min.ai"
    key_hint: str  # "set ONEMIN_API_KEY or pass api_key=... (keys at app.1min.ai)"


def _plain_seconds(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds in a ``Retry-After`` header: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if (seconds := _plain_seconds(value)) is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def parse_reset(value: str | None) -> float | None:
    """Seconds in an OpenAI-style reset header: ``"1s"``, ``"6m0s"``, ``"120ms"``, ``"0.5"``."""
    if not value:
        return None
    value = value.strip()
    if (seconds := _plain_seconds(value)) is not None:
        return seconds
    units = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    if not units:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(amount) * scale[unit] for amount, unit in units)


def _looks_html(text: str) -> bool:
    head = text.lstrip()[:200].lower()
    return head.startswith(("<!doctype html", "<html")) or "<body" in head


def message_of(text: str) -> tuple[str, str | None]:
    """(message, code) from an error body of any shape the services use.

    Tries ``error.message``, ``message``, ``error`` (a string), ``detail``, then
    the raw text cut short; an HTML page becomes a one-line description.
    """
    if not text.strip():
        return "no details in the response", None
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        code = body.get("errorCode") or body.get("code")
        msg: Any = None
        if isinstance(err, dict):
            msg = err.get("message")
            code = code or err.get("code") or err.get("type")
        if not msg:
            msg = body.get("message")
        if not msg and isinstance(err, str):
            msg = err
        if not msg:
            msg = body.get("detail")
        details = body.get("details")
        if msg and isinstance(details, str) and details and details not in str(msg):
            msg = f"{msg}: {details}"
        if msg:
            return str(msg)[:500], str(code) if code else None
    if _looks_html(text):
        title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
        return (f"an HTML error page ({title.group(1).strip()[:80]})" if title else
                "an HTML error page"), None  # fmt: skip
    flat = " ".join(text.split())
    return (flat if len(flat) <= 200 else flat[:197] + "..."), None


def error_from_response(
    status: int, text: str, headers: httpx.Headers | dict[str, str], service: Service
) -> APIError:
    """The typed error for a failed response, with a message saying what to do."""
    msg, code = message_of(text)
    low = f"{msg} {code or ''}".lower()
    html = _looks_html(text)
    name = service.name
    kw: dict[str, Any] = {"status": status, "code": code}
    if status == 401 or (status == 403 and not html and not _CREDIT_WORDS.search(low)):
        return AuthenticationError(
            f"{name} rejected the API key ({msg}). Check it: {service.key_hint}.", **kw
        )
    if status in (402, 403, 429) and _CREDIT_WORDS.search(low) and not html:
        return OutOfCreditsError(
            f"{name} says the account is out of credits ({msg}). Top up the account, "
            "or switch to another backend.",
            **kw,
        )
    if status == 429:
        wait = parse_retry_after(headers.get("retry-after"))
        hint = f"wait {wait:.0f} s" if wait is not None else "wait a little"
        return RateLimitError(
            f"{name} is rate-limiting requests ({msg}); {hint} and try again.",
            retry_after=wait,
            **kw,
        )
    if "unsupported_model" in low or "model_not_found" in low or (status == 404 and "model" in low):
        return ModelNotFoundError(
            f"{name} does not offer this model ({msg}). Pick another one; "
            "conv.models() lists those that can see images.",
            **kw,
        )
    if status == 408:
        return APITimeoutError(f"{name} timed out answering ({msg}); try again.", **kw)
    if status >= 500 or status in RETRY_STATUSES or html:
        return ServerError(
            f"{name} had a server error (HTTP {status}: {msg}). This is usually "
            "temporary: try again in a moment.",
            retryable=True,
            **kw,
        )
    return BadRequestError(f"{name} rejected the request (HTTP {status}): {msg}", **kw)


def _transport_error(exc: httpx.TransportError, service: Service) -> APIError:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(
            f"{service.name} did not answer in time ({type(exc).__name__}). Check your "
            "connection and try again, or raise the timeout.",
            retryable=True,
        )
    return APIConnectionError(
        f"Could not reach {service.name} ({type(exc).__name__}: {exc}). Check your "
        "network and the base URL, then try again.",
        retryable=True,
    )


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    jitter = wait_exponential_jitter(
        multiplier=policy.backoff, max=policy.max_backoff, jitter=policy.backoff
    )

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            return min(exc.retry_after, policy.max_retry_after)
        return float(jitter(state))

    return wait


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, APIError) and exc.retryable


async def send(
    client: httpx.AsyncClient,
    build: Callable[[], httpx.Request],
    service: Service,
    policy: RetryPolicy,
    key: Secret | None = None,
    limiter: RateLimiter | None = None,
) -> httpx.Response:
    """Send until a successful response has *started*; return it unread.

    The caller reads (or streams) the body and must close the response.  A
    request is rebuilt for every attempt, so bodies such as multipart uploads
    are sent whole each time.  ``key`` is blanked out of error bodies before
    they become messages: some gateways quote the key they rejected.  With a
    ``limiter`` every attempt waits for its slot, and a 429 slows the limiter
    down and is sent again after the pause (up to ``policy.max_throttled``
    seconds of pauses) instead of using up an attempt: throttling is the
    limiter's business, failures the retries'.
    """
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_retries + 1) | stop_after_delay(policy.max_total),
        wait=_wait(policy),
        retry=retry_if_exception(_retryable),
        reraise=True,
    )
    paused = 0.0
    async for attempt in retrying:
        with attempt:
            while True:
                if limiter is not None:
                    await limiter.acquire()
                try:
                    response = await client.send(build(), stream=True)
                except httpx.TransportError as exc:
                    raise _transport_error(exc, service) from None
                if response.status_code < 400:
                    if limiter is not None:
                        limiter.observe(response.headers)
                    return response
                try:
                    body = (await response.aread()).decode("utf-8", "replace")
                except httpx.TransportError:
                    body = ""
                finally:
                    await response.aclose()
                if key is not None:
                    body = key.redact(body)
                error = error_from_response(response.status_code, body, response.headers, service)
                if (
                    limiter is None
                    or not isinstance(error, RateLimitError)
                    or paused >= policy.max_throttled
                ):
                    raise error
                paused += limiter.throttled(error.retry_after)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


#: How long a server may take to end a stream's body after its end marker.
END_GRACE = 0.1


async def finish_body(rest: AsyncIterator[Any], grace: float = END_GRACE) -> None:
    """Read what follows a stream's end marker, so its connection carries the next turn.

    httpx drops a connection whose response is closed before its body ended,
    and the next turn then pays for a new TCP (and TLS) handshake.  Servers end
    the body right after the marker; one that keeps it open gets ``grace``
    seconds, then its connection is dropped as before.  Whatever arrives after
    the marker is ignored, and no failure here can spoil a complete answer.
    """

    async def drain() -> None:
        async for _ in rest:
            pass

    with contextlib.suppress(Exception):
        await asyncio.wait_for(drain(), grace)


def stream_error(exc: httpx.TransportError, service: Service, partial: str) -> APIError:
    """A failure after the answer started: never retried (it would bill twice)."""
    what = (
        f"no data for longer than the read timeout ({type(exc).__name__})"
        if isinstance(exc, httpx.TimeoutException)
        else f"the connection broke ({type(exc).__name__})"
    )
    kept = f"; the {len(partial)} characters received are kept" if partial else ""
    return StreamInterruptedError(
        f"The answer from {service.name} stopped part-way: {what}{kept}. "
        "Retry the turn to ask again (it is not re-sent automatically, which would bill twice).",
        partial_text=partial,
    )
