"""The widget's streaming cost, beside naive baselines measured in the same run.

1. Bytes sent kernel -> page for a 2,000-chunk reply: visionchat's coalesced
   custom messages, the reply's own size, and a naive widget that appends each
   chunk to a synced trait (ipywidgets re-sends the whole trait on every change).
   Target: at most 1.5x the reply plus a constant.
2. Page scripting time per chunk while a 50,000-character markdown reply streams
   into the real transcript code in headless Chromium (4 chunks per frame),
   per tenth of the reply, beside a naive full re-render per chunk.
   Target: flat as the reply grows, and no single piece of work over 50 ms.

    python benchmarks/bench_widget.py      (needs `npm install` and Debian's chromium)
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from visionchat.conversation import Conversation
from visionchat.providers.base import ModelInfo, TextDelta, TurnRequest, TurnResult
from visionchat.widget import ChatWidget

ROOT = Path(__file__).resolve().parents[1]
CHUNKS = 2000


def reply_chunks(n: int, total_chars: int) -> list[str]:
    """A realistic markdown reply cut into n chunks."""
    section = (
        "## Findings\n\nThe chart shows **two signals**; the second jumps near $x = 7$ "
        "where a step of height 0.8 is added.\n\n- first point\n- second point with `code`\n\n"
        "| measure | value |\n|---|---|\n| mean | 0.42 |\n| max | 1.8 |\n\n"
        "```python\nimport numpy as np\nx = np.linspace(0, 10, 200)\ny = np.sin(x)\n```\n\n"
        "Then $$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$ closes the argument.\n\n"
    )
    text = (section * (total_chars // len(section) + 1))[:total_chars]
    size = len(text) // n
    return [text[i * size : (i + 1) * size if i < n - 1 else len(text)] for i in range(n)]


class PacedProvider:
    """Streams fixed chunks at a steady pace, like a model (about 400 chunks/s)."""

    name = "bench"
    keeps_history = False

    def __init__(self, chunks: list[str], pause: float) -> None:
        self.chunks = chunks
        self.pause = pause

    def model_info(self, model: str) -> ModelInfo | None:
        return ModelInfo(id=model)

    async def list_models(self) -> list[ModelInfo]:
        return []

    async def upload(self, image: Any) -> str:
        return "ref"

    async def stream(self, request: TurnRequest) -> AsyncIterator[Any]:
        for i, c in enumerate(self.chunks):
            if i and i % 10 == 0:
                await asyncio.sleep(self.pause * 10)
            yield TextDelta(c)
        yield TurnResult(model=request.model)

    async def aclose(self) -> None:
        pass


def count_bytes(widget: Any) -> list[int]:
    sizes: list[int] = []
    comm_send = widget.comm.send

    def send(data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        sizes.append(len(json.dumps(data, default=str)) + sum(len(b) for b in buffers or []))
        comm_send(data=data, metadata=metadata, buffers=buffers)

    widget.comm.send = send
    return sizes


class NaiveWidget(anywidget.AnyWidget):
    _esm = "export default { render() {} }"
    text = traitlets.Unicode("").tag(sync=True)


def bytes_benchmark() -> None:
    chunks = reply_chunks(CHUNKS, 50_000)
    reply = sum(len(c) for c in chunks)
    conv = Conversation(model="bench", provider=PacedProvider(chunks, 0.0025))
    widget = ChatWidget(conv)
    sizes = count_bytes(widget)
    t0 = time.perf_counter()
    conv.ask("go", show=False)
    elapsed = time.perf_counter() - t0
    ours = sum(sizes)

    naive = NaiveWidget()
    naive_sizes = count_bytes(naive)
    text = ""
    for c in chunks:
        text += c
        naive.text = text
    base = sum(naive_sizes)
    print(f"1. bytes kernel -> page, {CHUNKS}-chunk reply of {reply:,} characters "
          f"streamed over {elapsed:.1f} s")  # fmt: skip
    print(f"   visionchat    {ours:>12,} bytes in {len(sizes):>5} messages  "
          f"{ours / reply:6.2f}x the reply")  # fmt: skip
    print(f"   naive trait   {base:>12,} bytes in {len(naive_sizes):>5} messages  "
          f"{base / reply:6.2f}x the reply")  # fmt: skip
    print(f"   visionchat / naive: {ours / base:.4f}x   (target: <= 1.5x the reply + a constant)")


def conversation_benchmark(turns: int = 40) -> None:
    """Settled-state bytes over a long conversation: split history vs whole per turn."""
    import gzip

    chunks = reply_chunks(40, 1_500)
    conv = Conversation(model="bench", provider=PacedProvider(chunks, 0.0))
    widget = ChatWidget(conv)
    ours = whole = 0
    last_earlier = widget.history
    for i in range(turns):
        conv.ask(f"question {i}", show=False)
        if widget.history is not last_earlier:  # re-sent only when it changed
            ours += len(widget.history)
            last_earlier = widget.history
        ours += len(widget.history_recent)
        payload = json.dumps(widget.messages, separators=(",", ":")).encode()
        whole += len(gzip.compress(payload, compresslevel=6, mtime=0))
    print(
        f"\n3. settled transcript bytes to the page over {turns} turns of 1,500-character replies"
    )
    print(f"   visionchat (earlier + recent parts)   {ours:>10,} bytes")
    print(f"   whole history re-sent every turn      {whole:>10,} bytes")
    print(f"   visionchat / whole: {ours / whole:.3f}x")


def page_benchmark() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "harness.js"
        subprocess.run(
            ["npx", "--no-install", "esbuild", str(ROOT / "benchmarks" / "page_harness.ts"),
             "--bundle", "--format=iife", f"--outfile={bundle}", "--log-level=warning"],
            cwd=ROOT, check=True,
        )  # fmt: skip
        chunks = reply_chunks(CHUNKS, 50_000)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"],
            )  # fmt: skip
            page = browser.new_page()
            page.set_content("<!doctype html><html><body></body></html>")
            page.add_script_tag(path=str(bundle))
            page.evaluate("(c) => window.bench.streamed(c, 4)", chunks[:200])  # warm up
            # ours is cheap: the median of 3 runs per tenth steadies the figure
            runs = [page.evaluate("(c) => window.bench.streamed(c, 4)", chunks) for _ in range(3)]
            ours = {
                "perChunkMs": [
                    statistics.median(r["perChunkMs"][i] for r in runs) for i in range(10)
                ],
                "maxFrameMs": max(r["maxFrameMs"] for r in runs),
                "totalMs": statistics.median(r["totalMs"] for r in runs),
                "endMs": statistics.median(r["endMs"] for r in runs),
                "fullMs": statistics.median(r["fullMs"] for r in runs),
            }
            base = page.evaluate("(c) => window.bench.naive(c)", chunks)
            browser.close()
    print("\n2. page scripting time per chunk, 50,000-character markdown reply, "
          f"{CHUNKS} chunks (4 per frame), per tenth of the reply "
          "(visionchat: median of 3 runs; naive: 1 run):")  # fmt: skip
    print("   tenth        " + " ".join(f"{i + 1:>6}" for i in range(10)))
    print("   visionchat ms" + " ".join(f"{v:6.3f}" for v in ours["perChunkMs"]))
    print("   naive      ms" + " ".join(f"{v:6.2f}" for v in base["perChunkMs"]))
    growth = ours["perChunkMs"][-1] / ours["perChunkMs"][0]
    naive_growth = base["perChunkMs"][-1] / base["perChunkMs"][0]
    print(f"   last tenth / first tenth: visionchat {growth:.2f}x, naive {naive_growth:.1f}x"
          "   (target: flat)")  # fmt: skip
    print(f"   longest single piece of work: visionchat {ours['maxFrameMs']:.1f} ms, "
          f"naive {base['maxFrameMs']:.1f} ms   (target: < 50 ms)")  # fmt: skip
    print(
        f"   turn end (streamed text kept, history applied): {ours['endMs']:.1f} ms, "
        f"vs drawing the reply whole from markdown {ours['fullMs']:.1f} ms "
        f"({ours['endMs'] / ours['fullMs']:.3f}x)"
    )
    print(
        f"   total scripting: visionchat {ours['totalMs']:.0f} ms, "
        f"naive {base['totalMs']:.0f} ms ({ours['totalMs'] / base['totalMs']:.3f}x)"
    )


def main() -> None:
    bytes_benchmark()
    page_benchmark()
    for turns in (20, 100):
        conversation_benchmark(turns)


if __name__ == "__main__":
    main()
