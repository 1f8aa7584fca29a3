// @vitest-environment jsdom
import { beforeAll, describe, expect, it } from "vitest";
import { thumbnail } from "./transcript";
import { ImageViewer, VIEW_EVENT, type ViewRequest } from "./viewer";

beforeAll(() => {
  // jsdom has no object URLs; these stand in so the viewer can be observed.
  let n = 0;
  URL.createObjectURL = () => `blob:test/${++n}`;
  URL.revokeObjectURL = () => {};
});

function setUp() {
  const requested: string[] = [];
  const viewer = new ImageViewer((sha) => requested.push(sha));
  const host = document.createElement("div");
  document.body.append(host);
  const thumb = thumbnail("blob:thumb", 1200, 900, "abc");
  host.append(thumb, viewer.el);
  host.addEventListener(VIEW_EVENT, (e) => {
    viewer.open((e as CustomEvent<ViewRequest>).detail, e.target as HTMLElement);
  });
  const button = thumb.querySelector("button") as HTMLButtonElement;
  const img = viewer.el.querySelector("img") as HTMLImageElement;
  const caption = viewer.el.querySelector("figcaption") as HTMLElement;
  return { viewer, requested, button, img, caption, host };
}

describe("ImageViewer", () => {
  it("opens from a thumbnail button, shows the preview, then the image as sent", () => {
    const { viewer, requested, button, img, caption } = setUp();
    expect(button.getAttribute("aria-label")).toContain("1200×900");
    expect(viewer.el.hidden).toBe(true);
    button.click();
    expect(viewer.el.hidden).toBe(false);
    expect(requested).toEqual(["abc"]);
    expect(img.src).toBe("blob:thumb");
    expect(caption.textContent).toContain("loading");
    expect(document.activeElement?.className).toBe("visionchat-viewer-close");

    viewer.receive("abc", { data: new Uint8Array(3000), mime: "image/jpeg", width: 1200, height: 900 });
    expect(img.src).toMatch(/^blob:test\//);
    expect(caption.textContent).toBe("1200×900 px as sent · JPEG, 3 KB");
  });

  it("closes on Escape and on the backdrop, returning focus; asks the kernel once", () => {
    const { viewer, requested, button } = setUp();
    button.click();
    viewer.receive("abc", { data: new Uint8Array(10), mime: "image/png", width: 1200, height: 900 });
    viewer.el.querySelector(".visionchat-viewer-close")?.dispatchEvent(
      new KeyboardEvent("keydown", { key: "Escape", bubbles: true }),
    );
    expect(viewer.el.hidden).toBe(true);
    expect(document.activeElement).toBe(button);

    button.click(); // cached: no second request
    expect(requested).toEqual(["abc"]);
    viewer.el.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(viewer.el.hidden).toBe(true);
  });

  it("says so when the kernel no longer has the image, and ignores a late answer for another", () => {
    const { viewer, button, img, caption } = setUp();
    button.click();
    viewer.receive("other", { data: new Uint8Array(10), mime: "image/png", width: 10, height: 10 });
    expect(img.src).toBe("blob:thumb");
    viewer.missing("abc");
    expect(caption.textContent).toContain("Only the preview");
  });
});
