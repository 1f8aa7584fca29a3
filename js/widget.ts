// The visionchat chat widget: image previews, a streaming transcript and a composer.
// It only displays and drives the kernel's Conversation: every action becomes a
// small message to the kernel, and everything shown comes from traits or from the
// streaming messages the kernel sends.
import type { AnyModel, RenderProps } from "@anywidget/types";
import "./widget.css";
import {
  inflateHistory,
  isKernelMessage,
  toBlobUrl,
  type PageMessage,
  type SettledMessage,
  type Thumbnail,
} from "./protocol";
import { thumbnail, Transcript } from "./transcript";
import { ImageViewer, VIEW_EVENT, type ViewRequest } from "./viewer";

export interface ModelChoice {
  id: string;
  label: string;
}

export interface WidgetTraits {
  history: DataView; // gzip-compressed JSON of the earlier SettledMessage[]
  history_recent: DataView; // ... and of the last few, which follow them
  thumbnails: Record<string, Thumbnail>;
  pending: string[];
  model: string;
  models: ModelChoice[];
  web_search: boolean;
  web_search_available: boolean;
  busy: boolean;
  notice: string;
  error: string;
}

type Model = AnyModel<WidgetTraits>;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  cls: string,
  attrs: Record<string, string> = {},
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  e.className = cls;
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// Files from the computer reach the kernel in parts (_uploads.py has the same numbers).
const UPLOAD_PART_BYTES = 2 * 1024 * 1024;
const MAX_UPLOAD_BYTES = 256 * 1024 * 1024;

export function render({ model, el: host }: RenderProps<WidgetTraits>): () => void {
  const urls = new Map<string, string>();
  const imageUrl = (sha: string) => {
    const t = model.get("thumbnails")[sha];
    if (!t) return null;
    let url = urls.get(sha);
    if (!url) {
      url = toBlobUrl(t);
      urls.set(sha, url);
    }
    return { url, width: t.width, height: t.height };
  };
  const send = (msg: PageMessage, buffers?: ArrayBuffer[]) => model.send(msg, undefined, buffers);

  const root = el("div", "visionchat-root");
  const notice = el("div", "visionchat-notice", { role: "status" });
  const transcript = new Transcript(imageUrl, () => send({ type: "retry" }));
  const progress = el("div", "visionchat-progress", { role: "status" });
  const errorBox = el("div", "visionchat-error visionchat-inline-error", { role: "alert" });
  const previews = el("div", "visionchat-previews", { role: "group", "aria-label": "Images for the next message" });

  const composer = el("div", "visionchat-composer");
  const input = el("textarea", "visionchat-input", {
    rows: "2",
    placeholder: "Ask about the images… (Enter sends, Shift+Enter adds a line; paste or drop images)",
    "aria-label": "Message",
  });
  const fileInput = el("input", "visionchat-file", {
    type: "file",
    accept: "image/*",
    multiple: "",
    "aria-label": "Attach images",
  });
  const attach = el("button", "visionchat-attach", { type: "button", "aria-label": "Attach images" });
  attach.textContent = "+ Image";
  const modelPick = el("select", "visionchat-model", { "aria-label": "Model" });
  const webLabel = el("label", "visionchat-web");
  const web = el("input", "visionchat-web-toggle", { type: "checkbox" });
  webLabel.append(web, " web search");
  const sendBtn = el("button", "visionchat-send", { type: "button", "aria-label": "Send" });
  sendBtn.textContent = "Send";
  const stopBtn = el("button", "visionchat-stop", { type: "button", "aria-label": "Stop the answer" });
  stopBtn.textContent = "Stop";
  const controls = el("div", "visionchat-controls");
  controls.append(attach, fileInput, modelPick, webLabel, sendBtn, stopBtn);
  composer.append(previews, input, controls);
  const viewer = new ImageViewer((sha) => send({ type: "view-image", sha }));
  root.append(notice, transcript.el, progress, errorBox, composer, viewer.el);
  root.addEventListener(VIEW_EVENT, (e) => {
    const detail = (e as CustomEvent<ViewRequest>).detail;
    if (detail.sha) viewer.open(detail, e.target instanceof HTMLElement ? e.target : null);
  });
  host.append(root);

  const submit = () => {
    const text = input.value.trim();
    if (!text && model.get("pending").length === 0) return;
    if (model.get("busy")) {
      // the text stays in the box for when the answer is done
      errorBox.textContent = "An answer is still arriving: wait for it, or press Stop, then send.";
      return;
    }
    errorBox.textContent = "";
    send({ type: "submit", text });
    input.value = "";
  };
  const attachFiles = async (files: Iterable<File>) => {
    for (const f of files) {
      const name = f.name || "the image";
      if (!f.type.startsWith("image/")) {
        errorBox.textContent = `${f.name || "That file"} is not an image; attach PNG, JPEG, WebP or GIF files.`;
        continue;
      }
      if (f.size > MAX_UPLOAD_BYTES) {
        errorBox.textContent =
          `${name} is too large to attach here (over ${MAX_UPLOAD_BYTES / 2 ** 20} MB); ` +
          "pass it from Python instead: visionchat.chat('path/to/file').";
        continue;
      }
      // In parts: the Jupyter server drops a websocket on a message over 10 MiB.
      const parts = Math.max(1, Math.ceil(f.size / UPLOAD_PART_BYTES));
      const upload = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
      if (parts > 1) progress.textContent = `Sending ${name} to the kernel…`;
      for (let part = 0; part < parts; part++) {
        const bytes = await f.slice(part * UPLOAD_PART_BYTES, (part + 1) * UPLOAD_PART_BYTES).arrayBuffer();
        send({ type: "attach", name, mime: f.type, upload, part, parts }, [bytes]);
      }
    }
  };

  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  input.addEventListener("paste", (e) => {
    const files = Array.from(e.clipboardData?.files ?? []);
    if (files.length) {
      e.preventDefault();
      void attachFiles(files);
    }
  });
  root.addEventListener("dragover", (e) => {
    e.preventDefault();
    root.classList.add("visionchat-dragging");
  });
  root.addEventListener("dragleave", () => root.classList.remove("visionchat-dragging"));
  root.addEventListener("drop", (e) => {
    e.preventDefault();
    root.classList.remove("visionchat-dragging");
    const files = Array.from(e.dataTransfer?.files ?? []);
    if (files.length) {
      void attachFiles(files);
      return;
    }
    // An image dragged from another web page arrives as its address, not a file.
    const url = (e.dataTransfer?.getData("text/uri-list") ?? "")
      .split(/\r?\n/)
      .find((line) => line && !line.startsWith("#"));
    if (url && /^https?:\/\//i.test(url)) {
      errorBox.textContent = "";
      progress.textContent = "Fetching the dropped image…";
      send({ type: "attach-url", url });
    } else {
      errorBox.textContent = "Nothing to attach there: drop image files, or an image from a web page.";
    }
  });
  attach.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    void attachFiles(Array.from(fileInput.files ?? []));
    fileInput.value = "";
  });
  sendBtn.addEventListener("click", submit);
  stopBtn.addEventListener("click", () => send({ type: "cancel" }));
  modelPick.addEventListener("change", () => {
    model.set("model", modelPick.value);
    model.save_changes();
  });
  web.addEventListener("change", () => {
    model.set("web_search", web.checked);
    model.save_changes();
  });

  let messages: SettledMessage[] = [];
  let generation = 0;
  const drawMessages = () => transcript.setMessages(messages);
  const loadHistory = async () => {
    const mine = ++generation;
    const [earlier, recent] = await Promise.all([
      inflateHistory(model.get("history")),
      inflateHistory(model.get("history_recent")),
    ]);
    if (mine !== generation) return; // a newer history arrived meanwhile
    messages = [...earlier, ...recent];
    drawMessages();
  };
  const drawPreviews = () => {
    previews.replaceChildren(
      ...model.get("pending").map((sha) => {
        const info = imageUrl(sha);
        const item = el("div", "visionchat-preview");
        if (info) item.append(thumbnail(info.url, info.width, info.height, sha));
        const rm = el("button", "visionchat-remove", { type: "button", "aria-label": "Remove this image" });
        rm.textContent = "×";
        rm.addEventListener("click", () => send({ type: "remove-attachment", sha }));
        item.append(rm);
        return item;
      }),
    );
  };
  const drawModels = () => {
    const current = model.get("model");
    const choices = model.get("models");
    const list = choices.some((c) => c.id === current) ? choices : [{ id: current, label: current }, ...choices];
    modelPick.replaceChildren(
      ...list.map((c) => {
        const o = el("option", "", { value: c.id });
        o.textContent = c.label;
        o.selected = c.id === current;
        return o;
      }),
    );
  };
  const drawState = () => {
    const busy = model.get("busy");
    root.classList.toggle("visionchat-busy", busy);
    sendBtn.disabled = busy;
    stopBtn.hidden = !busy;
    web.checked = model.get("web_search");
    webLabel.hidden = !model.get("web_search_available");
    notice.textContent = model.get("notice");
    notice.hidden = !model.get("notice");
    errorBox.textContent = model.get("error");
    if (!busy) progress.textContent = "";
  };

  const onCustom = (msg: unknown, buffers?: (DataView | ArrayBuffer)[]) => {
    if (!isKernelMessage(msg)) return;
    switch (msg.type) {
      case "turn-start":
        transcript.startTurn(msg.id, msg.model);
        break;
      case "delta":
        transcript.appendDelta(msg.id, msg.text);
        break;
      case "attach-progress":
        progress.textContent =
          msg.received < msg.total
            ? `Receiving ${msg.name}… ${Math.round((100 * msg.received) / msg.total)}%`
            : "";
        break;
      case "upload-progress":
        progress.textContent = msg.done < msg.total ? `Uploading images… ${msg.done}/${msg.total}` : "";
        break;
      case "image":
        if (buffers && buffers.length) {
          viewer.receive(msg.sha, { data: buffers[0], mime: msg.mime, width: msg.width, height: msg.height });
        }
        break;
      case "image-missing":
        viewer.missing(msg.sha);
        break;
      case "turn-end":
        transcript.endTurn(msg.id, msg.message);
        break;
      case "turn-error":
        transcript.endTurn(msg.id, null, msg.message, msg.retryable);
        break;
    }
  };

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- anywidget handlers take any
  const handlers: [string, (...args: any[]) => void][] = [];
  const on = (event: string, fn: (...args: any[]) => void) => {
    model.on(event, fn);
    handlers.push([event, fn]);
  };
  on("change:history", () => void loadHistory());
  on("change:history_recent", () => void loadHistory());
  on("change:thumbnails", () => {
    drawMessages();
    drawPreviews();
  });
  on("change:pending", drawPreviews);
  on("change:model", drawModels);
  on("change:models", drawModels);
  for (const t of ["busy", "web_search", "web_search_available", "notice", "error"]) {
    on(`change:${t}`, drawState);
  }
  on("msg:custom", onCustom);
  void loadHistory();
  drawPreviews();
  drawModels();
  drawState();

  return () => {
    for (const [event, fn] of handlers) model.off(event, fn);
    for (const u of urls.values()) URL.revokeObjectURL(u);
    viewer.dispose();
  };
}

export default { render };

// exported for the unit tests
export type { Model };
