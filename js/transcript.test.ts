// @vitest-environment jsdom
import { describe, expect, it } from "vitest";
import { inflateHistory, isKernelMessage } from "./protocol";
import { settleBoundary, Transcript } from "./transcript";

function manualFrames() {
  const queue: (() => void)[] = [];
  return {
    schedule: (cb: () => void) => queue.push(cb),
    run: () => queue.splice(0).forEach((cb) => cb()),
    pending: () => queue.length,
  };
}

describe("Transcript", () => {
  it("rebuilds settled messages, user text as typed and assistant text as markdown", () => {
    const t = new Transcript(() => null, () => {});
    t.setMessages([
      { id: "u1", role: "user", text: "<b>not bold</b>" },
      { id: "a1", role: "assistant", text: "**bold**", model: "gpt-4o", credits: 56 },
    ]);
    const msgs = t.el.querySelectorAll(".visionchat-msg");
    expect(msgs).toHaveLength(2);
    expect(msgs[0].querySelector("b")).toBeNull();
    expect(msgs[0].textContent).toContain("<b>not bold</b>");
    expect(msgs[1].querySelector("strong")?.textContent).toBe("bold");
    expect(msgs[1].textContent).toContain("56 credits");
  });

  it("coalesces deltas into one render per frame and only re-renders the streaming message", () => {
    const frames = manualFrames();
    const t = new Transcript(() => null, () => {}, frames.schedule);
    t.setMessages([{ id: "a0", role: "assistant", text: "earlier" }]);
    const earlier = t.el.firstElementChild;
    t.startTurn("a1", "gpt-4o");
    for (const w of ["Hel", "lo ", "**wor", "ld**"]) t.appendDelta("a1", w);
    expect(frames.pending()).toBe(1);
    expect(t.renders).toBe(0);
    frames.run();
    expect(t.renders).toBe(1);
    expect(t.el.querySelector(".visionchat-streaming strong")?.textContent).toBe("world");
    expect(t.el.firstElementChild).toBe(earlier); // untouched
    t.appendDelta("other-turn", "ignored");
    expect(t.streamingText()).toBe("Hello **world**");
  });

  it("keeps the partial text when a turn fails and offers Retry", () => {
    let retried = 0;
    const frames = manualFrames();
    const t = new Transcript(() => null, () => (retried += 1), frames.schedule);
    t.startTurn("a1", "gpt-4o");
    t.appendDelta("a1", "partial answer");
    t.endTurn("a1", null, "The stream broke off; press Retry.", true);
    const msg = t.el.querySelector(".visionchat-msg") as HTMLElement;
    expect(msg.textContent).toContain("partial answer");
    expect(msg.querySelector("[role=alert]")?.textContent).toContain("broke off");
    (msg.querySelector(".visionchat-retry") as HTMLButtonElement).click();
    expect(retried).toBe(1);
    expect(t.streamingText()).toBeNull();
  });

  it("replaces the streaming message with the settled one at turn end", () => {
    const t = new Transcript(() => null, () => {}, () => {});
    t.startTurn("a1", "m");
    t.appendDelta("a1", "draft");
    t.endTurn("a1", { id: "a1", role: "assistant", text: "final *text*", model: "m" });
    expect(t.el.querySelectorAll(".visionchat-msg")).toHaveLength(1);
    expect(t.el.querySelector(".visionchat-streaming")).toBeNull();
    expect(t.el.querySelector("em")?.textContent).toBe("text");
  });

  it("keeps the streamed rendering at turn end and when the settled history arrives", () => {
    const frames = manualFrames();
    const t = new Transcript(() => null, () => {}, frames.schedule);
    const user = { id: "u1", role: "user" as const, text: "hi" };
    t.setMessages([user]);
    const userEl = t.el.querySelector(".visionchat-user");
    t.startTurn("a1", "m");
    t.appendDelta("a1", "first **para**\n\nthe *last* one");
    frames.run();
    const streamedStrong = t.el.querySelector("strong");
    const facts = { id: "a1", role: "assistant" as const, model: "m", credits: 5, error: null };
    t.endTurn("a1", facts);
    const answer = t.el.querySelector(".visionchat-assistant") as HTMLElement;
    expect(answer.classList.contains("visionchat-streaming")).toBe(false);
    expect(answer.querySelector(".visionchat-caret")).toBeNull();
    expect(answer.querySelector("strong")).toBe(streamedStrong); // not rendered again
    expect(answer.querySelector("em")?.textContent).toBe("last"); // the tail, settled
    expect(answer.textContent).toContain("5 credits");

    // The history trait then brings the same messages, in the kernel's field order.
    const text = "first **para**\n\nthe *last* one";
    t.setMessages([user, { id: "a1", role: "assistant", text, model: "m", credits: 5, error: null }]);
    expect(t.el.querySelector(".visionchat-assistant")).toBe(answer);
    expect(t.el.querySelector(".visionchat-user")).toBe(userEl);
    // A message that changed is drawn anew.
    t.setMessages([user, { id: "a1", role: "assistant", text, model: "m", credits: 6, error: null }]);
    expect(t.el.querySelector(".visionchat-assistant")).not.toBe(answer);
    expect(t.el.textContent).toContain("6 credits");
  });

  it("sanitizes streamed model text too", () => {
    const frames = manualFrames();
    const t = new Transcript(() => null, () => {}, frames.schedule);
    t.startTurn("a1", "m");
    t.appendDelta("a1", '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>');
    frames.run();
    expect(t.el.querySelector("script")).toBeNull();
    expect(t.el.querySelector("[onerror]")).toBeNull();
  });
});

describe("incremental streaming render", () => {
  it("settles paragraphs at blank lines outside code fences", () => {
    const text = "para one\n\n```\ncode\n\nmore code\n```\n\npara two\n\ntail";
    const cut = settleBoundary(text, 0);
    expect(text.slice(0, cut)).toBe("para one\n\n```\ncode\n\nmore code\n```\n\npara two\n\n");
    expect(settleBoundary("no blank line yet", 0)).toBe(0);
    expect(settleBoundary("```\nopen fence\n\nstill code", 0)).toBe(0);
  });

  it("renders finished paragraphs once and only re-renders the tail", () => {
    const frames = manualFrames();
    const t = new Transcript(() => null, () => {}, frames.schedule);
    t.startTurn("a1", "m");
    t.appendDelta("a1", "first **para**\n\nsecond");
    frames.run();
    const settledNode = t.el.querySelector(".visionchat-streaming strong");
    t.appendDelta("a1", " grows");
    frames.run();
    expect(t.el.querySelector(".visionchat-streaming strong")).toBe(settledNode); // not rebuilt
    expect(t.el.querySelector(".visionchat-streaming")?.textContent).toContain("second grows");
  });

  it("keeps a long answer's settled paragraphs in a short list of groups", () => {
    const frames = manualFrames();
    const t = new Transcript(() => null, () => {}, frames.schedule);
    t.startTurn("a1", "m");
    for (let i = 0; i < 500; i++) {
      t.appendDelta("a1", `paragraph ${i}\n\n`);
      frames.run();
    }
    const body = t.el.querySelector(".visionchat-streaming .visionchat-body") as HTMLElement;
    const settled = body.firstElementChild as HTMLElement;
    const paragraphs = settled.querySelectorAll("p");
    expect(paragraphs).toHaveLength(500);
    expect(paragraphs[499].textContent).toBe("paragraph 499");
    expect(settled.children.length).toBeLessThanOrEqual(Math.ceil(1000 / 64) + 1); // p and "\n" nodes
  });
});

describe("protocol", () => {
  it("inflates the gzip-compressed settled history", async () => {
    const messages = [{ id: "a", role: "assistant", text: "héllo ×" }];
    const plain = new Response(JSON.stringify(messages)).body as ReadableStream<Uint8Array>;
    const gzip = new CompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>;
    const buf = await new Response(plain.pipeThrough(gzip)).arrayBuffer();
    expect(await inflateHistory(new DataView(buf))).toEqual(messages);
    expect(await inflateHistory(new DataView(new ArrayBuffer(0)))).toEqual([]);
  });

  it("recognises kernel messages and rejects anything else", () => {
    expect(isKernelMessage({ type: "delta", id: "a", text: "x" })).toBe(true);
    expect(isKernelMessage({ type: "submit", text: "x" })).toBe(false);
    expect(isKernelMessage(null)).toBe(false);
    expect(isKernelMessage("delta")).toBe(false);
  });
});
