// The image viewer: a thumbnail opened larger. Thumbnails are all the page holds
// (≤ 256 px); the image as it was sent is asked of the kernel only when someone
// opens it, shown over the thumbnail meanwhile, and kept for the next time.

import { toBlobUrl, type Thumbnail } from "./protocol";

export interface ViewRequest {
  sha: string;
  url: string; // the thumbnail, shown until the full image arrives
  width: number; // the size actually sent
  height: number;
}

/** The event a thumbnail fires (bubbling) when it is clicked or activated by keyboard. */
export const VIEW_EVENT = "visionchat-view";

function describe(width: number, height: number, mime: string, bytes: number): string {
  const kind = mime.replace(/^image\//, "").toUpperCase();
  const size = bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1024))} KB`;
  return `${width}×${height} px as sent · ${kind}, ${size}`;
}

export class ImageViewer {
  readonly el: HTMLElement;
  private readonly img: HTMLImageElement;
  private readonly caption: HTMLElement;
  private readonly closeBtn: HTMLButtonElement;
  private readonly full = new Map<string, { url: string; caption: string }>();
  private current: string | null = null;
  private returnFocus: HTMLElement | null = null;

  constructor(private readonly request: (sha: string) => void) {
    this.el = document.createElement("div");
    this.el.className = "visionchat-viewer";
    this.el.hidden = true;
    this.el.setAttribute("role", "dialog");
    this.el.setAttribute("aria-modal", "true");
    this.el.setAttribute("aria-label", "Image as sent");
    const fig = document.createElement("figure");
    this.img = document.createElement("img");
    this.caption = document.createElement("figcaption");
    this.closeBtn = document.createElement("button");
    this.closeBtn.type = "button";
    this.closeBtn.className = "visionchat-viewer-close";
    this.closeBtn.setAttribute("aria-label", "Close the image");
    this.closeBtn.textContent = "×";
    fig.append(this.img, this.caption);
    this.el.append(this.closeBtn, fig);
    this.closeBtn.addEventListener("click", () => this.close());
    this.el.addEventListener("click", (e) => {
      if (e.target === this.el) this.close(); // the backdrop, not the image
    });
    this.el.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation(); // JupyterLab would leave edit mode on Escape
        this.close();
      } else if (e.key === "Tab") {
        e.preventDefault(); // one control: focus stays in the dialog
        this.closeBtn.focus();
      }
    });
  }

  open(view: ViewRequest, from: HTMLElement | null = null): void {
    this.current = view.sha;
    this.returnFocus = from;
    const known = this.full.get(view.sha);
    this.img.src = known ? known.url : view.url;
    this.img.alt = `image ${view.width}×${view.height}`;
    this.caption.textContent = known ? known.caption : `${view.width}×${view.height} px as sent · loading…`;
    this.el.hidden = false;
    this.closeBtn.focus();
    if (!known) this.request(view.sha);
  }

  /** The kernel sent the image: show it if it is still the one open. */
  receive(sha: string, image: Thumbnail): void {
    let known = this.full.get(sha);
    if (!known) {
      const caption = describe(image.width, image.height, image.mime, image.data.byteLength);
      known = { url: toBlobUrl(image), caption };
      this.full.set(sha, known);
    }
    if (this.current === sha) {
      this.img.src = known.url;
      this.caption.textContent = known.caption;
    }
  }

  /** The kernel no longer has it (restarted, or the message was removed). */
  missing(sha: string): void {
    if (this.current !== sha) return;
    this.caption.textContent =
      "Only the preview is available: the kernel no longer holds this image (was it restarted?).";
  }

  close(): void {
    if (this.el.hidden) return;
    this.el.hidden = true;
    this.current = null;
    this.returnFocus?.focus();
    this.returnFocus = null;
  }

  dispose(): void {
    for (const { url } of this.full.values()) URL.revokeObjectURL(url);
    this.full.clear();
  }
}
