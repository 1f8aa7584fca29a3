// The transcript: settled messages rebuilt from traits, plus at most one streaming
// message that is re-rendered at most once per animation frame. Only the streaming
// message is touched while text arrives, so the cost per chunk stays flat.
import { addCopyButtons, renderMarkdown } from "./markdown";
import type { SettledMessage } from "./protocol";
import { VIEW_EVENT, type ViewRequest } from "./viewer";

export type ImageUrlFor = (sha: string) => { url: string; width: number; height: number } | null;
type Schedule = (cb: () => void) => void;

const defaultSchedule: Schedule = (cb) => {
  if (typeof requestAnimationFrame === "function") requestAnimationFrame(() => cb());
  else setTimeout(cb, 16);
};

const GROUP = 64; // settled nodes per group in a streaming message

interface Built {
  key: string;
  el: HTMLElement;
}

interface Streaming {
  id: string;
  text: string;
  body: HTMLElement;
  settled: HTMLElement; // finished paragraphs, rendered once
  tail: HTMLElement; // the paragraph still arriving, re-rendered per frame
  settledUpTo: number; // how much of `text` is in `settled`
  dirty: boolean;
}

/**
 * Where the text can be cut so that everything before renders on its own: the
 * last blank line outside a code fence, at or after `from` (which is outside one).
 * Scans only the unsettled tail, so the work per frame does not grow with the reply.
 */
export function settleBoundary(text: string, from: number): number {
  let inFence = false;
  let boundary = from;
  let lineStart = from;
  while (lineStart < text.length) {
    const nl = text.indexOf("\n", lineStart);
    if (nl < 0) break;
    const line = text.slice(lineStart, nl);
    if (/^\s{0,3}(```|~~~)/.test(line)) inFence = !inFence;
    else if (!inFence && line.trim() === "" && lineStart > from) boundary = nl + 1;
    lineStart = nl + 1;
  }
  return boundary;
}

export class Transcript {
  readonly el: HTMLElement;
  private streaming: Streaming | null = null;
  private built = new Map<string, Built>(); // settled messages on screen, by id
  private frameQueued = false;
  renders = 0; // streaming renders done (for tests and the benchmark)

  constructor(
    private readonly imageUrl: ImageUrlFor,
    private readonly onRetry: () => void,
    private readonly schedule: Schedule = defaultSchedule,
  ) {
    this.el = document.createElement("div");
    this.el.className = "visionchat-transcript";
    this.el.setAttribute("role", "log");
    this.el.setAttribute("aria-live", "polite");
    this.el.setAttribute("aria-label", "Chat transcript");
  }

  /**
   * Show settled state (a new or re-opened view, or a turn that settled). A message
   * already on screen as it is now keeps its element: a turn's end costs the new
   * message, not a re-render of the whole conversation's markdown.
   */
  setMessages(messages: SettledMessage[]): void {
    const keep = this.streaming;
    const built = new Map<string, Built>();
    const els = messages.map((m, i) => {
      const key = this.keyOf(m, i === messages.length - 1);
      const known = this.built.get(m.id);
      const el = known && known.key === key ? known.el : this.messageEl(m, i === messages.length - 1);
      built.set(m.id, { key, el });
      return el;
    });
    this.built = built;
    if (keep && !messages.some((m) => m.id === keep.id)) {
      els.push(keep.body.parentElement as HTMLElement);
    }
    // Only what is out of place moves: a moved subtree is styled and laid out again.
    els.forEach((el, i) => {
      const here = this.el.children[i];
      if (here !== el) this.el.insertBefore(el, here ?? null);
    });
    while (this.el.children.length > els.length) this.el.lastElementChild?.remove();
    this.scrollToEnd();
  }

  /** What a message's element depends on: its fields, its thumbnails, its Retry button. */
  private keyOf(m: SettledMessage, last: boolean): string {
    const fields = JSON.stringify(m, Object.keys(m).sort());
    const thumbs = (m.images ?? []).map((sha) => (this.imageUrl(sha) ? "1" : "0")).join("");
    return `${fields}|${thumbs}|${last && !!m.error}`;
  }

  startTurn(id: string, model: string): void {
    const wrap = document.createElement("div");
    wrap.className = "visionchat-msg visionchat-assistant visionchat-streaming";
    wrap.dataset.id = id;
    wrap.append(this.header("assistant", model));
    const body = document.createElement("div");
    body.className = "visionchat-body";
    const settled = document.createElement("div");
    const tail = document.createElement("div");
    const caret = document.createElement("span");
    caret.className = "visionchat-caret";
    caret.textContent = "▍";
    tail.append(caret);
    body.append(settled, tail);
    wrap.append(body);
    this.el.append(wrap);
    this.streaming = { id, text: "", body, settled, tail, settledUpTo: 0, dirty: false };
    this.scrollToEnd();
  }

  appendDelta(id: string, text: string): void {
    const s = this.streaming;
    if (!s || s.id !== id) return;
    s.text += text;
    s.dirty = true;
    if (!this.frameQueued) {
      this.frameQueued = true;
      this.schedule(() => this.flush());
    }
  }

  /** Render the streaming message now (also called by the scheduled frame). */
  flush(): void {
    this.frameQueued = false;
    const s = this.streaming;
    if (!s || !s.dirty) return;
    s.dirty = false;
    this.settleUpTo(s, settleBoundary(s.text, s.settledUpTo));
    s.tail.innerHTML = renderMarkdown(s.text.slice(s.settledUpTo));
    const caret = document.createElement("span");
    caret.className = "visionchat-caret";
    caret.textContent = "▍";
    s.tail.append(caret);
    this.renders += 1;
    this.scrollToEnd();
  }

  /** Render `s.text` up to `cut` into the settled part, once. */
  private settleUpTo(s: Streaming, cut: number): void {
    if (cut <= s.settledUpTo) return;
    const block = document.createElement("div");
    block.innerHTML = renderMarkdown(s.text.slice(s.settledUpTo, cut));
    addCopyButtons(block);
    // Settled blocks go into groups of GROUP: the browser then re-lays-out a short
    // list of groups per frame, not every paragraph of a long answer.
    let group = s.settled.lastElementChild;
    if (!group || group.childNodes.length >= GROUP) {
      group = document.createElement("div");
      s.settled.append(group);
    }
    group.append(...Array.from(block.childNodes));
    s.settledUpTo = cut;
  }

  streamingText(): string | null {
    return this.streaming ? this.streaming.text : null;
  }

  /** The turn ended or failed: the settled message replaces the streaming one. */
  endTurn(
    id: string,
    message: (Omit<SettledMessage, "text"> & { text?: string }) | null,
    error?: string,
    retryable = false,
  ): void {
    const s = this.streaming;
    if (!s || s.id !== id) return;
    this.streaming = null;
    const old = s.body.parentElement as HTMLElement;
    const settled: SettledMessage = message
      ? { ...message, text: message.text ?? s.text }
      : { id, role: "assistant", text: s.text, error: error ?? null, retryable };
    let el: HTMLElement;
    if (settled.text === s.text) {
      // What streamed is the answer: settle the last paragraph and finish the message
      // where it stands. Rendering the whole reply again, or moving it in the page,
      // would cost one long task at the end of a long answer.
      this.settleUpTo(s, s.text.length);
      s.tail.remove();
      el = old;
      el.classList.remove("visionchat-streaming");
      el.firstElementChild?.replaceWith(this.header("assistant", settled.model));
      el.append(...this.footer(settled, true));
    } else {
      el = this.messageEl(settled, true);
      old.replaceWith(el);
    }
    this.built.set(id, { key: this.keyOf(settled, true), el });
  }

  private header(role: string, model?: string | null): HTMLElement {
    const h = document.createElement("div");
    h.className = "visionchat-meta";
    h.textContent = role === "user" ? "You" : model ? model : "Assistant";
    return h;
  }

  private messageEl(m: SettledMessage, last: boolean): HTMLElement {
    const wrap = document.createElement("div");
    wrap.className = `visionchat-msg visionchat-${m.role}`;
    wrap.dataset.id = m.id;
    wrap.append(this.header(m.role, m.model));
    if (m.images && m.images.length) {
      const strip = document.createElement("div");
      strip.className = "visionchat-thumbs";
      for (const sha of m.images) {
        const info = this.imageUrl(sha);
        if (!info) continue;
        strip.append(thumbnail(info.url, info.width, info.height, sha));
      }
      wrap.append(strip);
    }
    const body = document.createElement("div");
    body.className = "visionchat-body";
    if (m.role === "assistant") {
      body.innerHTML = renderMarkdown(m.text);
      addCopyButtons(body);
    } else {
      body.textContent = m.text; // the user's own words, shown as typed
    }
    wrap.append(body, ...this.footer(m, last));
    return wrap;
  }

  /** The facts line (stopped, credits, tokens, time) and the error with its Retry. */
  private footer(m: SettledMessage, last: boolean): HTMLElement[] {
    const out: HTMLElement[] = [];
    const facts: string[] = [];
    if (m.interrupted) facts.push("stopped");
    if (m.credits != null) facts.push(`${m.credits} credits`);
    if (m.tokens != null) facts.push(`${m.tokens} tokens`);
    if (m.duration != null) facts.push(`${m.duration.toFixed(1)} s`);
    if (facts.length) {
      const f = document.createElement("div");
      f.className = "visionchat-facts";
      f.textContent = facts.join(" · ");
      out.push(f);
    }
    if (m.error) {
      const e = document.createElement("div");
      e.className = "visionchat-error";
      e.setAttribute("role", "alert");
      e.textContent = m.error;
      if (m.retryable !== false && last) {
        const b = document.createElement("button");
        b.className = "visionchat-retry";
        b.type = "button";
        b.textContent = "Retry";
        b.setAttribute("aria-label", "Retry this turn");
        b.addEventListener("click", () => this.onRetry());
        e.append(" ", b);
      }
      out.push(e);
    }
    return out;
  }

  private scrollToEnd(): void {
    this.el.scrollTop = this.el.scrollHeight;
  }
}

/**
 * A thumbnail with the size actually sent. It is a button: clicking it (or Enter
 * or Space on it) fires a bubbling VIEW_EVENT that the widget answers with the viewer.
 */
export function thumbnail(url: string, width: number, height: number, sha = ""): HTMLElement {
  const fig = document.createElement("figure");
  fig.className = "visionchat-thumb";
  const open = document.createElement("button");
  open.type = "button";
  open.className = "visionchat-thumb-open";
  open.title = `sent at ${width}×${height} px — click to view larger`;
  open.setAttribute("aria-label", `View the ${width}×${height} image larger`);
  const img = document.createElement("img");
  img.src = url;
  img.alt = `image ${width}×${height}`;
  open.append(img);
  open.addEventListener("click", () => {
    const detail: ViewRequest = { sha, url, width, height };
    open.dispatchEvent(new CustomEvent(VIEW_EVENT, { bubbles: true, detail }));
  });
  const cap = document.createElement("figcaption");
  cap.textContent = `${width}×${height}`;
  fig.append(open, cap);
  return fig;
}
