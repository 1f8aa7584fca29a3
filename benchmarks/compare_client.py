"""This tree's client against an earlier commit's, each in its own process, interleaved.

    python benchmarks/compare_client.py --against <git ref> [--rounds 300]

A gain of a few per cent is smaller than the drift of a shared machine between
two runs of ``bench_client.py``.  Here raw httpx, raw async httpx on a loop
thread, visionchat at ``--against`` and visionchat in this tree each run in a
process of their own (no thread or heap of one client touches another),
against the same emulators, and take turns request by request, so load that
comes and goes falls on all alike.  Who goes first turns every round: a client
measured right after another was up to 8% quicker (the server's side was
warm), and with a fixed order this tree, always last, came out 8% ahead of the
very same code.  Two figures: time to first delta on 20-chunk replies (every
round), and the process's CPU time for a 10,000-chunk reply (every tenth
round).  Printed: each one's medians, their ratios to raw httpx within a round,
this tree's ratios to the earlier commit's and to raw async httpx, and the
time of an empty round trip to an idle loop thread, which any client that
hands its work to a loop thread pays on top of the request.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile

from bench_client import ROOT, emulator

_WORKER = """
import sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[4])
import bench_client as bc
short, long = sys.argv[3].split(",")
if sys.argv[2] == "raw":
    streams = {"first": bc.raw_httpx(short), "cpu": bc.raw_httpx(long)}
elif sys.argv[2] == "raw-async":
    streams = {"first": bc.raw_httpx_async(short), "cpu": bc.raw_httpx_async(long)}
else:
    from visionchat.conversation import Conversation
    from visionchat.providers.openai import OpenAIProvider
    def conversation(base):
        provider = OpenAIProvider(bc.KEY, base_url=base + "/v1")
        return lambda: Conversation(model=bc.MODEL, provider=provider).stream(bc.PROMPT)
    streams = {"first": conversation(short), "cpu": conversation(long)}
def first():
    t0 = time.perf_counter()
    it = streams["first"]()
    next(it)
    took = time.perf_counter() - t0
    for _ in it:
        pass
    return took
def cpu():
    t0 = time.process_time()
    for _ in streams["cpu"]():
        pass
    return time.process_time() - t0
import asyncio, threading
loop = asyncio.new_event_loop()
threading.Thread(target=loop.run_forever, daemon=True).start()
async def nothing():
    pass
def hop():
    t0 = time.perf_counter()
    asyncio.run_coroutine_threadsafe(nothing(), loop).result()
    return time.perf_counter() - t0
measure = {"first": first, "cpu": cpu, "hop": hop}
for _ in range(3):
    first(), cpu()
print("ready", flush=True)
for line in sys.stdin:
    print(measure[line.strip()](), flush=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="a git ref of this repository")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.against, "src"],
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        sides = {
            "raw httpx": ("raw", str(ROOT / "src")),
            "raw async": ("raw-async", str(ROOT / "src")),
            args.against: ("vc", f"{tmp}/src"),
            "this tree": ("vc", str(ROOT / "src")),
        }
        with emulator(20) as short, emulator(10_000) as long:
            figures = run(sides, f"{short},{long}", args.rounds)

    def ratio(of: str, a: str, b: str) -> float:
        pairs = zip(figures[of][a], figures[of][b], strict=True)
        return statistics.median(x / y for x, y in pairs)

    for of, title, unit in (
        ("first", f"first delta, 20-chunk replies, {args.rounds} rounds", "ms"),
        ("cpu", f"CPU per 10,000-chunk reply, {args.rounds // 10} rounds", "ms"),
    ):
        print(f"{title}, one process per client")
        for name, values in figures[of].items():
            print(
                f"  {name:<12} {statistics.median(values) * 1000:8.2f} {unit}"
                f"   {ratio(of, name, 'raw httpx'):.3f}x raw httpx"
            )
        print(f"  this tree / {args.against}: {ratio(of, 'this tree', args.against):.3f}x")
        print(f"  this tree / raw async: {ratio(of, 'this tree', 'raw async'):.3f}x")
    hops = figures["hop"]["raw httpx"]
    firsts = figures["first"]["raw httpx"]
    share = statistics.median(h / f for h, f in zip(hops, firsts, strict=True))
    print(
        f"an empty round trip to an idle loop thread (the least any design with one): "
        f"{statistics.median(hops) * 1000:.2f} ms, {share:.3f}x raw httpx's first delta"
    )
    return 0


def run(
    sides: dict[str, tuple[str, str]], bases: str, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Each side's first-delta times every round and CPU times every tenth, taking turns."""
    workers = {}
    for name, (kind, src) in sides.items():
        cmd = [sys.executable, "-c", _WORKER, src, kind, bases, str(ROOT / "benchmarks")]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        workers[name] = proc
    figures: dict[str, dict[str, list[float]]] = {
        "first": {name: [] for name in workers},
        "cpu": {name: [] for name in workers},
        "hop": {"raw httpx": []},
    }
    try:
        names = list(workers)
        for i in range(rounds):
            # Who goes first turns every round: the one right after another
            # client was measured up to 8% quicker (a warm server), so a fixed
            # order favoured whoever came last even against the same code.
            order = names[i % len(names) :] + names[: i % len(names)]
            for of in ("first", "cpu") if i % 10 == 9 else ("first",):
                for name in order:
                    figures[of][name].append(_ask(workers[name], of))
            figures["hop"]["raw httpx"].append(_ask(workers["raw httpx"], "hop"))
    finally:
        for proc in workers.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)
    return figures


def _ask(proc: subprocess.Popen[str], what: str) -> float:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(what + "\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


if __name__ == "__main__":
    sys.exit(main())
