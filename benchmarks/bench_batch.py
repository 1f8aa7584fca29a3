"""One question over many images at 1min.ai's rate limit, beside two naive loops.

    python benchmarks/bench_batch.py [--images 300] [--limit 180] [--latency 1,3]
                                     [--sequential 20]

The emulator enforces ``--limit`` requests a minute over a sliding minute (as
1min.ai documents 180) and answers each chat after a random 1-3 s, like a real
model.  Three clients ask the same question of the same images, each against a
fresh emulator, all in this run:

* ``visionchat.batch``: one-off turns (an upload and a chat per image), paced by
  the rate limiter;
* a naive sequential loop, ``Conversation().ask()`` per image, as a user would
  write it first (an upload, a new server conversation and a chat per image).
  It takes about 2 s an image, so it runs over the first ``--sequential``
  images and its time for all of them is projected from its rate;
* a naive unthrottled gather: ``asyncio.gather`` of ``ask_async`` over every
  image at once, the built-in retries (3, honouring Retry-After) its only
  defence against 429s.

Printed: wall time, images a minute, requests sent and how many were beyond
those the answers needed (429s and retries), rows lost, and for the batch the
sustained request rate after its first 10 s as a share of the limit (target
>= 95%, with zero rows lost and zero requests beyond those needed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from PIL import Image  # noqa: E402

import visionchat  # noqa: E402
from visionchat.testing import Emulator  # noqa: E402

KEY = "bench-key"
PROMPT = "Which colour dominates this image?"


def make_images(n: int) -> list[Image.Image]:
    """Distinct small images: each upload and answer is its own."""
    return [
        Image.new("RGB", (96 + i % 50, 64 + i // 50), ((37 * i) % 256, (91 * i) % 256, 200))
        for i in range(n)
    ]


@dataclass
class Run:
    name: str
    images: int
    seconds: float
    requests: int
    needed: int
    throttled: int
    lost: int
    sustained: float | None = None  # requests a minute after the first 10 s
    projected: float | None = None  # seconds for all images, from a partial run

    @property
    def per_minute(self) -> float:
        return 60.0 * self.images / self.seconds


def emulator(args: argparse.Namespace) -> Emulator:
    low, high = (float(x) for x in args.latency.split(","))
    return Emulator(api_key=KEY, rate_limit=args.limit, rate_window=60.0, latency=(low, high))


def sustained_rate(emu: Emulator, started: float) -> float | None:
    """Requests a minute from 10 s after the start to the last request."""
    window = sorted(r.time for r in emu.requests if r.time >= started + 10.0)
    if len(window) < 2 or window[-1] <= window[0]:
        return None
    return 60.0 * (len(window) - 1) / (window[-1] - window[0])


def run_batch(args: argparse.Namespace, images: list[Image.Image]) -> Run:
    with emulator(args) as emu:
        started = time.monotonic()
        # The limit the service documents (1min.ai's 180/min is the default).
        table = visionchat.batch(
            images, PROMPT, provider="1min", api_key=KEY, base_url=emu.base_url,
            rate_limit=args.limit, progress=False,
        )  # fmt: skip
        seconds = time.monotonic() - started
        lost = int(table["error"].notna().sum())
        return Run("visionchat.batch", len(images), seconds, len(emu.requests),
                   2 * len(images), emu.throttled, lost, sustained_rate(emu, started))  # fmt: skip


def run_sequential(args: argparse.Namespace, images: list[Image.Image], total: int) -> Run:
    with emulator(args) as emu:
        started = time.monotonic()
        lost = 0
        for img in images:
            conv = visionchat.Conversation(provider="1min", api_key=KEY, base_url=emu.base_url)
            try:
                conv.ask(PROMPT, img, show=False)
            except visionchat.VisionChatError:
                lost += 1
        seconds = time.monotonic() - started
        run = Run("naive loop", len(images), seconds, len(emu.requests), 3 * len(images),
                  emu.throttled, lost)  # fmt: skip
        run.projected = total * seconds / len(images)
        return run


def run_gather(args: argparse.Namespace, images: list[Image.Image]) -> Run:
    with emulator(args) as emu:

        async def everything() -> list[object]:
            def one(img: Image.Image) -> object:
                conv = visionchat.Conversation(provider="1min", api_key=KEY, base_url=emu.base_url)
                return conv.ask_async(PROMPT, img, show=False)

            return await asyncio.gather(*(one(i) for i in images), return_exceptions=True)

        started = time.monotonic()
        results = asyncio.run(everything())
        seconds = time.monotonic() - started
        lost = sum(1 for r in results if isinstance(r, BaseException))
        return Run("naive gather", len(images), seconds, len(emu.requests), 3 * len(images),
                   emu.throttled, lost)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--limit", type=int, default=180, help="requests a minute")
    parser.add_argument("--latency", default="1,3", help="seconds per answer: low,high")
    parser.add_argument("--sequential", type=int, default=20, help="images for the naive loop")
    args = parser.parse_args()
    os.environ.setdefault("VISIONCHAT_OFFLINE_WPS", "0")
    images = make_images(args.images)
    print(f"{args.images} images, limit {args.limit} requests/min, answers take "
          f"{args.latency.replace(',', '-')} s", flush=True)  # fmt: skip
    runs = [run_batch(args, images)]
    print(f"  batch done in {runs[0].seconds:.0f} s", flush=True)
    runs.append(run_sequential(args, images[: args.sequential], args.images))
    print(f"  naive loop done in {runs[1].seconds:.0f} s", flush=True)
    runs.append(run_gather(args, images))
    print(f"  naive gather done in {runs[2].seconds:.0f} s", flush=True)

    print()
    head = f"{'client':<17} {'images':>6} {'time':>8} {'img/min':>8} {'requests':>9} "
    print(head + f"{'beyond needed':>13} {'429s':>5} {'rows lost':>9}")
    for r in runs:
        time_cell = f"{r.seconds:.0f} s" + ("*" if r.projected else "")
        print(f"{r.name:<17} {r.images:>6} {time_cell:>8} {r.per_minute:>8.1f} {r.requests:>9} "
              f"{r.requests - r.needed:>13} {r.throttled:>5} {r.lost:>9}")  # fmt: skip
    batch, loop, gather = runs
    print(f"* naive loop over {loop.images} images; all {args.images} would take about "
          f"{loop.projected:.0f} s at its rate")  # fmt: skip
    print()
    if batch.sustained is not None:
        print(f"batch sustained request rate after 10 s: {batch.sustained:.1f}/min = "
              f"{batch.sustained / args.limit:.1%} of the limit (target >= 95%)")  # fmt: skip
    print(f"batch rows lost: {batch.lost}; requests beyond those needed: "
          f"{batch.requests - batch.needed} (target 0 and 0)")  # fmt: skip
    assert loop.projected is not None
    print(f"batch time / naive loop time (projected): {batch.seconds / loop.projected:.2f}x")
    print(f"batch images/min / naive loop: {batch.per_minute / loop.per_minute:.2f}x")
    print(f"batch time / naive gather time: {batch.seconds / gather.seconds:.2f}x "
          f"(the gather lost {gather.lost} of {gather.images} rows and sent "
          f"{gather.requests - gather.needed} requests beyond those needed)")  # fmt: skip
    print(f"requests per image: batch {batch.requests / batch.images:.2f}, naive loop "
          f"{loop.requests / loop.images:.2f}, naive gather "
          f"{gather.requests / gather.images:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
