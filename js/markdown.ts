// Model output is untrusted: it is parsed as markdown, then sanitized by DOMPurify
// before it touches the DOM. Nothing a model emits may run script in the notebook.
import DOMPurify from "dompurify";
import { marked } from "marked";

let hooked = false;

function installHooks(): void {
  if (hooked) return;
  hooked = true;
  // Links open in a new tab and cannot reach back into the notebook page.
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node instanceof Element && node.tagName === "A" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  });
}

/** Render model text (markdown, possibly with raw HTML) to sanitized HTML. */
export function renderMarkdown(text: string): string {
  installHooks();
  const html = marked.parse(text, { async: false, gfm: true, breaks: false }) as string;
  return DOMPurify.sanitize(html, {
    USE_PROFILES: { html: true },
    // No images either: a model could embed a remote image whose URL carries data
    // out of the notebook (a known prompt-injection exfiltration route).
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "img"],
    FORBID_ATTR: ["style"],
  });
}
