// Model output is untrusted: it is parsed as markdown, then sanitized by DOMPurify
// before it touches the DOM. Nothing a model emits may run script in the notebook.
import DOMPurify from "dompurify";
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import python from "highlight.js/lib/languages/python";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import katex from "katex";
import { Marked, type TokenizerAndRendererExtension } from "marked";

// The languages a notebook user meets most; others render as plain code. Only a
// named language is highlighted: auto-detection would re-run on every frame while
// an answer streams.
for (const [name, lang] of Object.entries({ python, javascript, typescript, json, bash, sql })) {
  hljs.registerLanguage(name, lang);
}
hljs.registerAliases(["py", "ipython"], { languageName: "python" });
hljs.registerAliases(["js"], { languageName: "javascript" });
hljs.registerAliases(["ts"], { languageName: "typescript" });
hljs.registerAliases(["sh", "shell", "console"], { languageName: "bash" });

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// LaTeX for teaching: $…$, \(…\) inline and $$…$$, \[…\] as blocks, typeset by
// KaTeX as MathML, which browsers render natively (no fonts or stylesheets).
function tex(src: string, display: boolean): string {
  return katex.renderToString(src, { output: "mathml", throwOnError: false, displayMode: display });
}

const blockMath: TokenizerAndRendererExtension = {
  name: "blockMath",
  level: "block",
  start: (src) => src.match(/\$\$|\\\[/)?.index,
  tokenizer(src) {
    const m = /^\$\$([\s\S]+?)\$\$|^\\\[([\s\S]+?)\\\]/.exec(src);
    if (m) return { type: "blockMath", raw: m[0], text: (m[1] ?? m[2]).trim() };
    return undefined;
  },
  renderer: (token) => `<div class="visionchat-math">${tex(token.text as string, true)}</div>`,
};

const inlineMath: TokenizerAndRendererExtension = {
  name: "inlineMath",
  level: "inline",
  start: (src) => src.match(/\$|\\\(/)?.index,
  tokenizer(src) {
    // $x$ but not prices: no space just inside the dollars, no digit right after.
    const m = /^\$(?!\s)([^$\n]+?)(?<!\s)\$(?!\d)|^\\\(([\s\S]+?)\\\)/.exec(src);
    if (m) return { type: "inlineMath", raw: m[0], text: m[1] ?? m[2] };
    return undefined;
  },
  renderer: (token) => tex(token.text as string, false),
};

const marked = new Marked({
  gfm: true,
  breaks: false,
  extensions: [blockMath, inlineMath],
  renderer: {
    code({ text, lang }) {
      const language = (lang ?? "").trim().split(/\s+/)[0];
      const body =
        language && hljs.getLanguage(language)
          ? hljs.highlight(text, { language, ignoreIllegals: true }).value
          : escapeHtml(text);
      const cls = language ? ` class="hljs language-${escapeHtml(language)}"` : ' class="hljs"';
      return `<pre><code${cls}>${body}</code></pre>\n`;
    },
  },
});

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
  const html = marked.parse(text, { async: false }) as string;
  return DOMPurify.sanitize(html, {
    USE_PROFILES: { html: true, mathMl: true },
    // No images either: a model could embed a remote image whose URL carries data
    // out of the notebook (a known prompt-injection exfiltration route).
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "img"],
    FORBID_ATTR: ["style"],
  });
}

/** Give every code block a copy button (added after sanitizing: it is ours, not the model's). */
export function addCopyButtons(root: HTMLElement): void {
  for (const pre of Array.from(root.querySelectorAll("pre"))) {
    if (pre.querySelector(".visionchat-copy")) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "visionchat-copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy this code");
    button.addEventListener("click", () => {
      const code = pre.querySelector("code")?.textContent ?? "";
      void navigator.clipboard?.writeText(code).then(
        () => (button.textContent = "Copied"),
        () => (button.textContent = "Copy failed"),
      );
    });
    pre.prepend(button);
  }
}
