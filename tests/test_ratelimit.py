"""The rate limiter on a fake clock: spacing, cuts on 429, recovery, headers.

The emulator's own limit is tested over real HTTP at the end.
"""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest

from visionchat.ratelimit import MARGIN, RateLimiter, parse_reset
from visionchat.testing import Emulator


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def starts(limiter: RateLimiter, clock: Clock, n: int) -> list[float]:
    async def go() -> list[float]:
        out = []
        for _ in range(n):
            await limiter.acquire()
            out.append(clock.now)
        return out

    return asyncio.run(go())


def test_requests_are_spaced_evenly_just_under_the_limit() -> None:
    clock = Clock()
    limiter = RateLimiter(180, clock=clock, sleep=clock.sleep)
    times = starts(limiter, clock, 181)
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(times)}
    assert gaps == {round(60 / (180 * MARGIN), 6)}
    # any 60 s window holds fewer than 180 starts
    assert max(sum(1 for t in times if s <= t < s + 60) for s in times) < 180


def test_concurrent_senders_share_one_pace() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock, sleep=clock.sleep)
    seen: list[float] = []

    async def sender() -> None:
        for _ in range(5):
            await limiter.acquire()
            seen.append(clock.now)

    async def main() -> None:
        await asyncio.gather(*(sender() for _ in range(4)))

    asyncio.run(main())
    assert len(seen) == 20
    assert seen[-1] - seen[0] == pytest.approx(19 * 60 / (60 * MARGIN))


def test_a_429_cuts_the_rate_pauses_and_later_recovers() -> None:
    clock = Clock()
    limiter = RateLimiter(120, clock=clock, sleep=clock.sleep, recover_after=10)
    starts(limiter, clock, 3)
    assert limiter.throttled(5.0) == 5.0
    cut = limiter.stats.per_minute
    assert cut == pytest.approx(120 * MARGIN * 0.75)
    limiter.throttled(5.0)  # the same burst: no second cut
    assert limiter.stats.per_minute == cut
    before = clock.now
    starts(limiter, clock, 1)
    assert clock.now >= before + 5.0  # waited out Retry-After
    clock.now += 30
    starts(limiter, clock, 40)
    assert limiter.stats.per_minute == pytest.approx(120 * MARGIN)  # back to the ceiling
    assert limiter.stats.throttled == 2


def test_without_retry_after_the_pause_backs_off() -> None:
    limiter = RateLimiter(60)
    assert [limiter.throttled(None) for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    limiter.observe({})  # a success resets the backoff
    assert limiter.throttled(None) == 1.0


def test_headers_set_the_ceiling_and_a_spent_window_pauses() -> None:
    clock = Clock()
    limiter = RateLimiter(500, clock=clock, sleep=clock.sleep)
    limiter.observe({"x-ratelimit-limit-requests": "60"})
    assert limiter.stats.ceiling == pytest.approx(60 * MARGIN)
    assert limiter.stats.per_minute == pytest.approx(60 * MARGIN)
    limiter.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"})
    before = clock.now
    starts(limiter, clock, 1)
    assert clock.now == pytest.approx(before + 360)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("120ms", 0.12),
        ("0.5", 0.5),
        ("1h2m", 3720.0),
        ("", None),
        ("soon", None),
    ],
)
def test_parse_reset(text: str, seconds: float | None) -> None:
    assert parse_reset(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_the_emulator_limits_requests_in_a_sliding_window() -> None:
    with Emulator(api_key="k", rate_limit=3, rate_window=30) as emu:
        with httpx.Client(base_url=emu.base_url, headers={"API-KEY": "k"}) as client:
            ok = [client.get("/models").status_code for _ in range(3)]
            refused = client.get("/models")
            v1 = client.get("/v1/models", headers={"Authorization": "Bearer k"})
        assert ok == [200, 200, 200]
        assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 30
        assert v1.status_code == 429 and v1.headers["x-ratelimit-remaining-requests"] == "0"
        assert v1.headers["x-ratelimit-limit-requests"] == "3"
        assert emu.throttled == 2
        emu.rate_limit_retry_after = False
        with httpx.Client(base_url=emu.base_url, headers={"API-KEY": "k"}) as client:
            assert "retry-after" not in client.get("/models").headers


def test_a_higher_limit_in_the_headers_is_used_at_once_until_a_429() -> None:
    limiter = RateLimiter(500)
    limiter.observe({"x-ratelimit-limit-requests": "5000"})
    assert limiter.stats.per_minute == pytest.approx(5000 * MARGIN)
    limiter.throttled(1.0)
    cut = limiter.stats.per_minute
    limiter.observe({"x-ratelimit-limit-requests": "10000"})
    assert limiter.stats.per_minute == cut  # after a 429, climbing back is gradual
