"""Pacing requests to what a service allows, and adapting when it says otherwise.

Why pacing and not a window: a limit such as 1min.ai's 180 requests a minute is
enforced by the service over a sliding minute.  Sending the first 180 at once
and then nothing for a minute fills the window as well, but leaves the turns
that follow waiting in one lump and collides with anything else the account
sends.  Spacing requests evenly at a little under the limit never meets the
window's edge, so no request is ever refused as long as the service's limit is
the one we were told.

When the service is stricter than that (another client on the same key, a
lower plan), a 429 arrives.  The rate is then cut multiplicatively, every
sender waits for ``Retry-After`` (or a backoff when the service gives none),
and the refused request is sent again: nothing is lost, and one request is
spent.  After a quiet spell the rate climbs back additively towards the
ceiling: the AIMD rule TCP uses, for the same reason (find the real limit
without a table of plans).

OpenAI-style servers also say their limit in ``x-ratelimit-*`` headers; the
limiter takes the ceiling from them and waits for the reset when a server
says no requests remain.

All of it runs on one event loop (the engine's) and costs no thread: senders
queue on one lock and each sleeps until its slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .providers._http import parse_reset

__all__ = ["RateLimitStats", "RateLimiter", "parse_reset"]

#: Sending at this share of a published limit keeps clear of its edge.
MARGIN = 0.98


@dataclass(frozen=True)
class RateLimitStats:
    sent: int  # requests let through
    throttled: int  # 429s reported back
    per_minute: float  # the current pace
    ceiling: float  # what the pace may climb back to


class RateLimiter:
    """Paces request starts to ``per_minute`` and adapts to 429s and rate-limit headers.

    ``acquire()`` before each request (each attempt of it); ``throttled()``
    when the service answered 429; ``observe()`` with the headers of any other
    answer.  ``per_minute`` is the published limit: the pace starts at
    ``MARGIN`` of it and never climbs above that.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        floor: float = 1.0,
        decrease: float = 0.75,
        recover_after: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if not per_minute > 0:
            raise ValueError(f"per_minute must be positive, not {per_minute!r}")
        self._ceiling = float(per_minute) * MARGIN
        self._rate = self._ceiling
        self._floor = min(float(floor), self._ceiling)
        self._decrease = decrease
        self._recover_after = recover_after
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0  # the earliest start of the next request
        self._paused_until = 0.0
        self._last_cut = -float("inf")
        self._backoff = 1.0
        self._lock: asyncio.Lock | None = None
        self._sent = 0
        self._throttled = 0

    def __repr__(self) -> str:
        return f"RateLimiter({self._rate:.1f}/min, ceiling {self._ceiling:.1f}/min)"

    @property
    def stats(self) -> RateLimitStats:
        return RateLimitStats(self._sent, self._throttled, self._rate, self._ceiling)

    async def acquire(self) -> None:
        """Wait for this request's slot: evenly spaced, after any pause the service asked for."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while True:
                now = self._clock()
                start = max(self._next, self._paused_until, now)
                if start <= now:
                    break
                await self._sleep(start - now)
            self._recover(now)
            self._next = max(self._next, now) + 60.0 / self._rate
            self._sent += 1

    def throttled(self, retry_after: float | None) -> float:
        """The service refused a request with 429: slow down and pause; returns the pause."""
        now = self._clock()
        self._throttled += 1
        # One cut per burst of refusals: the requests already in flight when the
        # first 429 came say nothing new about the limit.
        if now - self._last_cut > 60.0 / self._rate:
            self._rate = max(self._floor, self._rate * self._decrease)
            self._last_cut = now
        if retry_after is None:
            wait = self._backoff
            self._backoff = min(self._backoff * 2, 60.0)
        else:
            wait = max(0.0, retry_after)
        self._paused_until = max(self._paused_until, now + wait)
        self._next = max(self._next, self._paused_until)
        return wait

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn from a successful answer's ``x-ratelimit-*`` headers (OpenAI style)."""
        self._backoff = 1.0
        limit = headers.get("x-ratelimit-limit-requests")
        if limit:
            try:
                per_minute = float(limit)
            except ValueError:
                per_minute = 0.0
            if per_minute > 0 and abs(per_minute * MARGIN - self._ceiling) > 1e-9:
                self._ceiling = per_minute * MARGIN
                # The server's own word beats the starting guess; after a 429 the
                # pace climbs back to it as usual.
                self._rate = (
                    self._ceiling if not self._throttled else min(self._rate, self._ceiling)
                )
        remaining = headers.get("x-ratelimit-remaining-requests")
        if remaining is not None and remaining.strip() in ("0", "0.0"):
            reset = parse_reset(headers.get("x-ratelimit-reset-requests"))
            if reset:
                self._paused_until = max(self._paused_until, self._clock() + reset)

    def _recover(self, now: float) -> None:
        if self._rate >= self._ceiling or now - self._last_cut < self._recover_after:
            return
        self._rate = min(self._ceiling, self._rate + self._ceiling * 0.1)
        self._last_cut = now - self._recover_after / 2  # climb again half a spell later
