"""What keeping the API key masked costs a request, beside the plain string it replaced.

    python benchmarks/bench_secret.py [--runs 7]

The key is held XORed with a random pad and unmasked for each request's headers.
In one run, interleaved, median of ``--runs``:

* building a 1min.ai chat request with the provider (``Secret.reveal()`` per
  request) beside building the same request with the key as a plain string
  (what the provider did before);
* ``Secret.reveal()`` alone beside one request answered over loopback HTTP by the
  emulator (in this process), the cheapest real request there is.

Target: request building within 1.1x of the plain string; unmasking under 1% of
a loopback round trip.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from visionchat._secret import Secret  # noqa: E402
from visionchat.providers.oneminai import OneMinAIProvider  # noqa: E402
from visionchat.testing import Emulator  # noqa: E402

KEY = "sk-bench-" + "0123456789abcdef" * 4  # as long as real keys
BODY = {"type": "UNIFY_CHAT_WITH_AI", "model": "gpt-4o", "promptObject": {"prompt": "hi"}}


def per_call(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)

    with Emulator(api_key=KEY) as emu:
        provider = OneMinAIProvider(KEY, base_url=emu.base_url)
        client = provider._http()
        url = emu.base_url + "/api/chat-with-ai"
        accept = "application/json, text/event-stream"

        def masked() -> object:
            return provider._request("POST", "/api/chat-with-ai", json=BODY)

        def plain() -> object:
            headers = {"API-KEY": KEY, "Accept": accept}
            return client.build_request("POST", url, headers=headers, json=BODY)

        secret = Secret(KEY)
        sync = httpx.Client(base_url=emu.base_url, timeout=10)

        def round_trip() -> object:
            return sync.get("/models", headers={"API-KEY": KEY}).raise_for_status()

        round_trip()  # connect once: keep-alive from here on
        cases = {"masked": (masked, 5000), "plain": (plain, 5000)}
        cases |= {"reveal": (secret.reveal, 20000), "http": (round_trip, 200)}
        for fn, number in cases.values():  # warm up
            per_call(fn, number // 10)
        figures: dict[str, list[float]] = {name: [] for name in cases}
        for run in range(args.runs):
            order = list(cases) if run % 2 else list(reversed(cases))  # neither always first
            for name in order:
                fn, number = cases[name]
                figures[name].append(per_call(fn, number))
        sync.close()

    med = {name: statistics.median(values) for name, values in figures.items()}
    print(f"median of {args.runs} runs, interleaved; key of {len(KEY)} characters")
    print(f"build a chat request, key masked (Secret):  {med['masked'] * 1e6:8.2f} us")
    print(f"build a chat request, key a plain string:   {med['plain'] * 1e6:8.2f} us")
    print(f"Secret.reveal() alone:                      {med['reveal'] * 1e6:8.2f} us")
    print(f"one loopback request to the emulator:       {med['http'] * 1e6:8.2f} us")
    print()
    ratio, share = med["masked"] / med["plain"], med["reveal"] / med["http"]
    print(f"masked / plain request building: {ratio:.3f}x   (target <= 1.1x)")
    print(f"reveal / loopback round trip:    {share:.4f}x   (target < 0.01x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
