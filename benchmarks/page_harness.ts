// Bundled by bench_widget.py into a page for headless Chromium: streams a long
// markdown reply into the real Transcript, and into a naive full re-render.
import { renderMarkdown } from "../js/markdown";
import { Transcript } from "../js/transcript";

interface Result {
  perChunkMs: number[]; // scripting time per chunk, one figure per tenth of the reply
  maxFrameMs: number; // the longest single piece of work
  totalMs: number;
  endMs?: number; // turn end + settled history, after streaming
  fullMs?: number; // the same reply rendered whole from markdown
}

function summarise(times: number[], chunksPerStep: number): Result {
  const tenth = Math.ceil(times.length / 10);
  const perChunkMs = [];
  for (let i = 0; i < times.length; i += tenth) {
    const slice = times.slice(i, i + tenth);
    perChunkMs.push(slice.reduce((a, b) => a + b, 0) / (slice.length * chunksPerStep));
  }
  return { perChunkMs, maxFrameMs: Math.max(...times), totalMs: times.reduce((a, b) => a + b, 0) };
}

// visionchat: deltas appended as they arrive, one render per animation frame.
function streamed(chunks: string[], perFrame: number): Result {
  const host = document.createElement("div");
  document.body.append(host);
  const t = new Transcript(() => null, () => {}, () => {}); // frames driven below
  host.append(t.el);
  t.startTurn("a", "bench");
  const times: number[] = [];
  for (let i = 0; i < chunks.length; i += perFrame) {
    const t0 = performance.now();
    for (const c of chunks.slice(i, i + perFrame)) t.appendDelta("a", c);
    t.flush();
    void host.offsetHeight; // include layout, as the browser would before painting
    times.push(performance.now() - t0);
  }
  // The turn ends, then the settled history arrives: both should reuse what streamed.
  const text = chunks.join("");
  const t1 = performance.now();
  t.endTurn("a", { id: "a", role: "assistant", model: "bench" });
  t.setMessages([{ id: "a", role: "assistant", text, model: "bench" }]);
  void host.offsetHeight;
  const endMs = performance.now() - t1;
  host.remove();
  // Baseline: the settled reply drawn from its markdown, as a fresh view does.
  const fresh = new Transcript(() => null, () => {}, () => {});
  document.body.append(fresh.el);
  const t2 = performance.now();
  fresh.setMessages([{ id: "a", role: "assistant", text, model: "bench" }]);
  void fresh.el.offsetHeight;
  const fullMs = performance.now() - t2;
  fresh.el.remove();
  return { ...summarise(times, perFrame), endMs, fullMs };
}

// Baseline: the whole message re-rendered for every chunk.
function naive(chunks: string[]): Result {
  const host = document.createElement("div");
  document.body.append(host);
  let text = "";
  const times: number[] = [];
  for (const c of chunks) {
    const t0 = performance.now();
    text += c;
    host.innerHTML = renderMarkdown(text);
    void host.offsetHeight;
    times.push(performance.now() - t0);
  }
  host.remove();
  return summarise(times, 1);
}

(window as unknown as { bench: unknown }).bench = { streamed, naive };
