"""Time to first delta of this tree against an earlier commit, each in its own process.

    python benchmarks/compare_first_delta.py --against <git ref> [--rounds 300]

A gain of a few per cent in first delta is smaller than the drift of a shared
machine between two runs of ``bench_client.py``.  Here raw httpx, visionchat
at ``--against`` and visionchat in this tree each run in a process of their
own (no thread or heap of one client touches another), against one emulator,
and take turns request by request, so load that comes and goes falls on all
three alike.  Printed: each one's median first delta, its median ratio to raw
httpx within the same round, and this tree's ratio to the earlier one.
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
if sys.argv[2] == "raw":
    stream = bc.raw_httpx(sys.argv[3])
else:
    from visionchat.conversation import Conversation
    from visionchat.providers.openai import OpenAIProvider
    provider = OpenAIProvider(bc.KEY, base_url=sys.argv[3] + "/v1")
    stream = lambda: Conversation(model=bc.MODEL, provider=provider).stream(bc.PROMPT)
def first():
    t0 = time.perf_counter()
    it = stream()
    next(it)
    took = time.perf_counter() - t0
    for _ in it:
        pass
    return took
for _ in range(5):
    first()
print("ready", flush=True)
for _ in sys.stdin:
    print(first(), flush=True)
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
        sides = {"raw httpx": ("raw", str(ROOT / "src")), args.against: ("vc", f"{tmp}/src")}
        sides["this tree"] = ("vc", str(ROOT / "src"))
        with emulator(20) as base:
            workers = {}
            for name, (kind, src) in sides.items():
                cmd = [sys.executable, "-c", _WORKER, src, kind, base, str(ROOT / "benchmarks")]
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                )
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
                workers[name] = proc
            times: dict[str, list[float]] = {name: [] for name in workers}
            for _ in range(args.rounds):
                for name, proc in workers.items():
                    assert proc.stdin is not None and proc.stdout is not None
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                    times[name].append(float(proc.stdout.readline()))
            for proc in workers.values():
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(10)

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

    print(f"first delta, 20-chunk replies, {args.rounds} rounds, one process per client")
    for name, values in times.items():
        print(
            f"  {name:<12} {statistics.median(values) * 1000:7.3f} ms"
            f"   {ratio(name, 'raw httpx'):.3f}x raw httpx"
        )
    print(f"this tree / {args.against}: {ratio('this tree', args.against):.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
