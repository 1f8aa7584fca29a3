"""The client's own cost per streamed reply, beside raw httpx and the openai SDK.

    python benchmarks/bench_client.py [--chunks 10000] [--runs 7]

One run, three clients, the same stream: the emulator's OpenAI-compatible
endpoint answers with ``--chunks`` content chunks (one word each, no delay)
from a separate process, so this process's CPU time is the client's alone.

* raw httpx: ``httpx.Client.stream`` + ``iter_lines`` + ``json.loads`` per
  event, the least a Python client can do; and the same with
  ``httpx.AsyncClient`` on a loop thread handing deltas over a queue, which is
  the least an async client usable from a notebook can do;
* the official ``openai`` SDK, ``stream=True``;
* visionchat: ``Conversation.stream`` with the OpenAI-compatible provider,
  which adds the engine thread hop, the provider's SSE parsing and error
  handling, the delta queue and the transcript bookkeeping; and that provider
  alone on a loop thread, to tell the two layers apart; and ("new conv") a new
  Conversation with a provider of its own for every reply, as each new widget
  or batch makes.

Printed per client (median of ``--runs``, clients interleaved): CPU time per
10,000 chunks and time to first delta, then visionchat's ratios.  Every client
has made a request before it is timed, so each starts from a warm connection
and, where it has one, a running loop thread.  A first request in a fresh
process is timed apart (cold first delta), from creating the client.  A ratio is the median of the
ratios within each round, the two clients timed moments apart, so that the
load of a shared machine, which drifts between rounds, cancels out.  Target:
within 1.2x of raw httpx in CPU and in time to first delta, and ahead of the SDK.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

KEY = "bench-key"
MODEL = "gpt-4o"
PROMPT = "Describe the picture in great detail."

# The emulator, in its own process, always answering with the long text.
_SERVER = """
import sys
from visionchat.testing import Emulator, _server

# The emulator writes a stream's headers and first chunk separately; with
# Nagle on, a client on a reused connection waits ~40 ms for a delayed ACK
# before the first chunk, which would drown every client's own latency.
_server._Handler.disable_nagle_algorithm = True

answer = " ".join(f"w{i}" for i in range(int(sys.argv[1])))

class LongAnswers(Emulator):
    def take_answer(self, default):
        return answer

with LongAnswers(sys.argv[2], port=0, chunk_delay=float(sys.argv[3])) as emu:
    print(emu.base_url, flush=True)
    sys.stdin.read()
"""


@contextmanager
def emulator(chunks: int, delay: float = 0.0) -> Iterator[str]:
    """The emulator answering with ``chunks`` chunks, ``delay`` seconds apart."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(chunks), KEY, str(delay)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""},
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


@dataclass
class Run:
    cpu: float  # seconds of this process's CPU for the whole reply
    first: float  # seconds from the call to the first text delta
    chunks: int
    chars: int


def timed(stream: Callable[[], Iterator[str]]) -> Run:
    cpu0, t0 = time.process_time(), time.perf_counter()
    first = None
    chunks = chars = 0
    for delta in stream():
        if first is None:
            first = time.perf_counter() - t0
        chunks += 1
        chars += len(delta)
    return Run(time.process_time() - cpu0, first or 0.0, chunks, chars)


def raw_httpx(base: str) -> Callable[[], Iterator[str]]:
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    body = {
        "model": MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream_options": {"include_usage": True},
    }

    def stream() -> Iterator[str]:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                choices = event.get("choices")
                if choices and (text := choices[0].get("delta", {}).get("content")):
                    yield text

    return stream


def raw_httpx_async(base: str) -> Callable[[], Iterator[str]]:
    """The same with ``httpx.AsyncClient`` on a private loop, as visionchat reads."""
    import asyncio
    import queue
    import threading

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    client: httpx.AsyncClient | None = None
    body = {
        "model": MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream_options": {"include_usage": True},
    }

    async def produce(out: queue.SimpleQueue[str | None]) -> None:
        nonlocal client
        if client is None:
            client = httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60
            )
        try:
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    choices = event.get("choices")
                    if choices and (text := choices[0].get("delta", {}).get("content")):
                        out.put(text)
        finally:
            out.put(None)

    def stream() -> Iterator[str]:
        out: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        fut = asyncio.run_coroutine_threadsafe(produce(out), loop)
        while (text := out.get()) is not None:
            yield text
        fut.result()

    return stream


def openai_sdk(base: str) -> Callable[[], Iterator[str]]:
    from openai import OpenAI

    client = OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)

    def stream() -> Iterator[str]:
        chunks = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in chunks:
            if chunk.choices and (text := chunk.choices[0].delta.content):
                yield text

    return stream


def provider_only(base: str) -> Callable[[], Iterator[str]]:
    """visionchat's OpenAI provider alone on a loop thread, as raw async is run.

    Separates the provider's cost (SSE parsing, error handling) from the
    Conversation's (engine hop, transcript, queue)."""
    import asyncio
    import queue
    import threading

    from visionchat.providers.base import TextDelta, TurnRequest
    from visionchat.providers.openai import OpenAIProvider

    provider = OpenAIProvider(KEY, base_url=base + "/v1")
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def produce(out: queue.SimpleQueue[str | None]) -> None:
        try:
            async for event in provider.stream(TurnRequest(prompt=PROMPT, model=MODEL)):
                if isinstance(event, TextDelta):
                    out.put(event.text)
        finally:
            out.put(None)

    def stream() -> Iterator[str]:
        out: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        fut = asyncio.run_coroutine_threadsafe(produce(out), loop)
        while (text := out.get()) is not None:
            yield text
        fut.result()

    return stream


def visionchat_client(base: str) -> Callable[[], Iterator[str]]:
    from visionchat.conversation import Conversation
    from visionchat.providers.openai import OpenAIProvider

    provider = OpenAIProvider(KEY, base_url=base + "/v1")

    def stream() -> Iterator[str]:
        # a fresh conversation each time: the same single-turn request as the others
        conv = Conversation(model=MODEL, provider=provider)
        yield from conv.stream(PROMPT)

    return stream


def visionchat_new_conversation(base: str) -> Callable[[], Iterator[str]]:
    """A new Conversation with a provider of its own each time, as a new widget or batch makes.

    Before providers shared the engine's client, each paid for a client (its
    TLS context) and a new connection on its first turn."""
    from visionchat.conversation import Conversation

    def stream() -> Iterator[str]:
        conv = Conversation(model=MODEL, provider="openai", api_key=KEY, base_url=base + "/v1")
        yield from conv.stream(PROMPT)

    return stream


def measure(base: str, chunks: int, runs: int) -> tuple[dict[str, list[Run]], list[str]] | None:
    clients = {
        "raw httpx": raw_httpx(base),
        "raw async": raw_httpx_async(base),
        "openai SDK": openai_sdk(base),
        "provider": provider_only(base),
        "visionchat": visionchat_client(base),
        "new conv": visionchat_new_conversation(base),
    }
    # one word per chunk: "w0 w1 ..."; clients may merge chunks that arrive
    # together, so the check is on the text, not on the number of pieces
    expected = len(" ".join(f"w{i}" for i in range(chunks)))
    for stream in clients.values():  # warm up: imports, connections, the engine
        timed(stream)
    results: dict[str, list[Run]] = {name: [] for name in clients}
    for _ in range(runs):
        for name, stream in clients.items():
            run = timed(stream)
            if run.chars != expected:
                print(f"{name}: got {run.chars} characters, expected {expected}")
                return None
            results[name].append(run)
    return results, list(clients)


PACED_CHUNKS, PACED_DELAY = 2000, 0.0005


def measure_paced(base: str, runs: int) -> tuple[dict[str, list[float]], dict[str, int]]:
    """CPU for a reply whose chunks the server paces, as a fast local model does.

    Each chunk then comes in its own read, so the engine hands text to the
    waiting thread at most every ``DELIVERY_INTERVAL``; the baseline is the
    same client with the interval at 0, which hands on every delta by itself.
    Returns CPU seconds per run and the number of pieces the caller got.
    """
    from visionchat import conversation

    clients = {"raw httpx": raw_httpx(base), "visionchat": visionchat_client(base)}
    interval = conversation.DELIVERY_INTERVAL
    settings = {"raw httpx": interval, "visionchat": interval, "per delta": 0.0}
    cpu: dict[str, list[float]] = {name: [] for name in settings}
    pieces: dict[str, int] = {}
    try:
        for _ in range(runs):
            for name, setting in settings.items():
                conversation.DELIVERY_INTERVAL = setting
                run = timed(clients.get(name, clients["visionchat"]))
                cpu[name].append(run.cpu)
                pieces[name] = run.chunks
    finally:
        conversation.DELIVERY_INTERVAL = interval
    return cpu, pieces


_COLD_CLIENTS: dict[str, Callable[[str], Callable[[], Iterator[str]]]] = {
    "raw httpx": raw_httpx,
    "raw async": raw_httpx_async,
    "visionchat": visionchat_client,
}


def cold_child(name: str, base: str) -> None:
    """In a fresh process: time from creating the client to the first delta.

    Imports are done first (they are the same whether or not a request
    follows); what is timed is what a first request pays: the client with
    its TLS context, a new connection, and for the async clients the loop
    thread and the asyncio backend httpcore loads on first use.
    """
    import visionchat.conversation
    import visionchat.providers.openai  # noqa: F401

    t0 = time.perf_counter()
    for _ in _COLD_CLIENTS[name](base)():
        print(time.perf_counter() - t0)
        return


def measure_cold(base: str, rounds: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {name: [] for name in _COLD_CLIENTS}
    for _ in range(rounds):
        for name in _COLD_CLIENTS:
            out = subprocess.run(
                [sys.executable, __file__, "--cold-child", name, base],
                capture_output=True,
                text=True,
                check=True,
                env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""},
            )
            found[name].append(float(out.stdout))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cold-child", nargs=2, metavar=("CLIENT", "BASE_URL"), help="internal")
    args = parser.parse_args(argv)
    if args.cold_child:
        cold_child(*args.cold_child)
        return 0

    # CPU on a long reply; time to first delta on a short one (the emulator
    # builds a reply's chunks before sending the first, ~40 ms for 10,000)
    with emulator(args.chunks) as base:
        long = measure(base, args.chunks, args.runs)
    with emulator(20) as base:
        short = measure(base, 20, args.runs * 4)
        cold = measure_cold(base, args.runs)
    with emulator(PACED_CHUNKS, PACED_DELAY) as base:
        paced, paced_pieces = measure_paced(base, max(3, args.runs // 2))
    if long is None or short is None:
        return 1
    (runs, names), (short_runs, _) = long, short

    per = 10_000 / args.chunks
    cpu = {n: statistics.median(r.cpu for r in rs) * per for n, rs in runs.items()}
    first = {n: statistics.median(r.first for r in rs) for n, rs in short_runs.items()}

    def ratio(a: str, b: str, of: str = "cpu") -> float:
        """Median over rounds of a's figure over b's in the same round."""
        rounds = runs if of == "cpu" else short_runs
        return statistics.median(
            getattr(x, of) / getattr(y, of) for x, y in zip(rounds[a], rounds[b], strict=True)
        )

    print(
        f"CPU: {args.chunks} chunks per reply, median of {args.runs} runs; first delta: "
        f"20-chunk replies, median of {args.runs * 4}; emulator in its own process"
    )
    print(f"{'client':<12} {'CPU per 10k chunks':>19} {'first delta':>12}")
    for name in names:
        print(f"{name:<12} {cpu[name] * 1000:>16.1f} ms {first[name] * 1000:>9.2f} ms")
    vc = "visionchat"
    print()
    print(f"visionchat / raw httpx CPU:  {ratio(vc, 'raw httpx'):.2f}x   (target <= 1.2x)")
    print(f"visionchat / raw async httpx on a loop thread CPU: {ratio(vc, 'raw async'):.2f}x")
    print(
        f"  of which: provider alone / raw async {ratio('provider', 'raw async'):.2f}x, "
        f"Conversation on top of the provider {ratio(vc, 'provider'):.2f}x"
    )
    print(f"visionchat / openai SDK CPU: {ratio(vc, 'openai SDK'):.2f}x   (target < 1.0x)")
    first_raw = ratio(vc, "raw httpx", "first")
    print(f"first delta, visionchat / raw httpx: {first_raw:.2f}x   (target <= 1.2x)")
    print(f"first delta, visionchat / raw async: {ratio(vc, 'raw async', 'first'):.2f}x")
    print(f"first delta, visionchat / openai SDK: {ratio(vc, 'openai SDK', 'first'):.2f}x")
    print(
        "first delta, a new Conversation and provider each turn / raw httpx: "
        f"{ratio('new conv', 'raw httpx', 'first'):.2f}x"
    )
    print()
    print(f"cold first delta (a fresh process each, from creating the client; {args.runs} rounds):")
    for name, times in cold.items():
        print(f"  {name:<12} {statistics.median(times) * 1000:>8.1f} ms")
    cold_raw = statistics.median(
        v / r for v, r in zip(cold["visionchat"], cold["raw httpx"], strict=True)
    )
    cold_async = statistics.median(
        v / r for v, r in zip(cold["visionchat"], cold["raw async"], strict=True)
    )
    print(f"cold, visionchat / raw httpx: {cold_raw:.2f}x, / raw async: {cold_async:.2f}x")
    print()
    print(
        f"paced reply ({PACED_CHUNKS} chunks, {PACED_DELAY * 1000:g} ms apart), CPU, "
        f"median of {len(paced['visionchat'])}:"
    )
    for name, times in paced.items():
        label = "visionchat, every delta handed on alone" if name == "per delta" else name
        print(
            f"  {label:<40} {statistics.median(times) * 1000:>7.1f} ms"
            f"   {paced_pieces[name]:>5} pieces to the caller"
        )

    def paced_ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(paced[a], paced[b], strict=True))

    print(
        f"paced, visionchat / raw httpx: {paced_ratio('visionchat', 'raw httpx'):.2f}x, "
        f"/ every delta handed on alone: {paced_ratio('visionchat', 'per delta'):.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
