"""Images from the computer by paste and drag-and-drop, and the widget in Notebook 7.

Paste and drop are real DOM events carrying real ``File`` objects in a
``DataTransfer``, dispatched where a person's paste or drop would land; the
widget's own listeners read them and upload the bytes to the kernel, and the
emulator's answer names the size and colour it received.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from image_server import serving

from .conftest import ARTIFACTS
from .test_widget_flow import ask, wait_answer_containing

pytestmark = pytest.mark.browser

CELLS = [
    "import visionchat\n"
    "conv = visionchat.Conversation(provider='1min')\n"
    "w = visionchat.chat(conversation=conv)\nw",
]

# Builds a DataTransfer of files from (name, mime, base64) triples and fires
# `kind` ("paste" or "drop", plus "dragover" before a drop) at `selector`.
_FIRE = """([selector, kind, files]) => {
    const dt = new DataTransfer();
    for (const [name, mime, b64] of files) {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        dt.items.add(new File([bytes], name, { type: mime }));
    }
    const target = document.querySelector(selector);
    if (kind === "paste") {
        target.focus();
        return target.dispatchEvent(
            new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
    }
    const init = { dataTransfer: dt, bubbles: true, cancelable: true };
    target.dispatchEvent(new DragEvent("dragover", init));
    return target.dispatchEvent(new DragEvent("drop", init));
}"""


def png(size: tuple[int, int], colour: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def previews_show(page: Any, *texts: str) -> None:
    page.wait_for_function(
        "(ts) => ts.every(t => (document.querySelector('.visionchat-previews')?.textContent"
        " || '').includes(t))",
        arg=list(texts),
        timeout=15_000,
    )


def test_paste_and_drop_images_remove_one_and_ask(open_notebook: Any) -> None:
    nb = open_notebook("inputs.ipynb", CELLS)
    page = nb.page
    nb.run_cell(0)
    nb.wait_for(".visionchat-root")

    # Paste one image into the message box: the page's default paste is prevented.
    blue = ["clip.png", "image/png", png((64, 48), (0, 0, 255))]
    default_ran = page.evaluate(_FIRE, [".visionchat-input", "paste", [blue]])
    assert default_ran is False
    previews_show(page, "64×48")

    # Drop two more on the widget, one of them not an image.
    page.evaluate(
        _FIRE,
        [
            ".visionchat-root",
            "drop",
            [
                ["red.png", "image/png", png((90, 30), (255, 0, 0))],
                ["notes.txt", "text/plain", base64.b64encode(b"not a picture").decode()],
            ],
        ],
    )
    previews_show(page, "64×48", "90×30")
    page.wait_for_function(
        "() => document.querySelector('.visionchat-root').textContent.includes('notes.txt is not"
        " an image')",
        timeout=10_000,
    )
    assert page.locator(".visionchat-dragging").count() == 0  # the drop cleared the highlight
    assert page.locator(".visionchat-previews .visionchat-thumb").count() == 2

    # Remove the pasted one; ask: the service receives exactly the dropped image.
    page.locator(".visionchat-previews .visionchat-preview").first.locator(
        ".visionchat-remove"
    ).click()
    page.wait_for_function(
        "() => document.querySelectorAll('.visionchat-previews .visionchat-thumb').length === 1",
        timeout=10_000,
    )
    assert "64×48" not in page.locator(".visionchat-previews").inner_text()
    ask(nb, "What did I drop?")
    wait_answer_containing(nb, "I received 1 image. Image 1 is 90×30, mostly red")
    assert page.locator(".visionchat-user .visionchat-thumb img").count() == 1


_DROP_LINK = """([selector, url]) => {
    const dt = new DataTransfer();
    if (url) dt.setData("text/uri-list", url);
    document.querySelector(selector).dispatchEvent(
        new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
}"""


def test_an_image_dragged_from_a_web_page_is_fetched_by_the_kernel(open_notebook: Any) -> None:
    with serving(base64.b64decode(png((70, 35), (0, 160, 0)))) as base:
        nb = open_notebook("link.ipynb", CELLS)
        page = nb.page
        nb.run_cell(0)
        nb.wait_for(".visionchat-root")
        page.evaluate(_DROP_LINK, [".visionchat-root", ""])  # nothing usable: say so
        page.wait_for_function(
            "() => document.querySelector('.visionchat-inline-error').textContent"
            ".includes('Nothing to attach')",
            timeout=10_000,
        )
        page.evaluate(_DROP_LINK, [".visionchat-root", f"{base}/green.png"])
        previews_show(page, "70×35")
        assert page.locator(".visionchat-inline-error").inner_text() == ""
        assert page.locator(".visionchat-progress").inner_text() == ""


def test_a_file_larger_than_a_websocket_message_arrives_in_parts(open_notebook: Any) -> None:
    """22 MB of PNG: sent whole, the Jupyter server would drop the page's websocket
    (10 MiB message limit) and the image would vanish without a word."""
    nb = open_notebook("big.ipynb", CELLS)
    page = nb.page
    nb.run_cell(0)
    nb.wait_for(".visionchat-root")
    noise = np.random.default_rng(0).integers(0, 255, (2700, 2700, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    assert len(buf.getvalue()) > 20 * 2**20
    big = ["noise.png", "image/png", base64.b64encode(buf.getvalue()).decode()]
    page.evaluate(_FIRE, [".visionchat-root", "drop", [big]])
    previews_show(page, "768×768")  # downscaled in the kernel to what gpt-4o keeps
    assert page.locator(".visionchat-progress").inner_text() == ""
    assert page.locator(".visionchat-inline-error").inner_text() == ""
    ask(nb, "What is this noise?")
    wait_answer_containing(nb, "Image 1 is 768×768")


def test_widget_in_notebook_7(lab: Any, browser: Any, service: Any) -> None:
    """The same widget in Jupyter Notebook 7's single-document page."""
    name = lab.write_notebook(
        "nb7.ipynb",
        [
            "import visionchat\nfrom PIL import Image\n"
            "w = visionchat.chat(Image.new('RGB', (200, 120), (255, 255, 0)),"
            " conversation=visionchat.Conversation(provider='1min'))\nw"
        ],
    )
    context = browser.new_context(viewport={"width": 1100, "height": 850})
    try:
        page = context.new_page()
        page.goto(f"{lab.url}/notebooks/{name}?token={lab.token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=90_000)
        # Run the cell once the kernel is ready: Notebook 7 shows its state in the toolbar.
        page.wait_for_function(
            "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel"
            "?.status === 'idle'",
            timeout=90_000,
        )
        editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
        editor.click()
        editor.press("Shift+Enter")
        page.locator(".visionchat-root").wait_for(timeout=60_000)
        page.locator(".visionchat-previews .visionchat-thumb img").wait_for(timeout=30_000)
        box = page.locator(".visionchat-input")
        box.fill("Which colour is it?")
        box.press("Enter")
        page.wait_for_function(
            "() => [...document.querySelectorAll("
            "'.visionchat-assistant:not(.visionchat-streaming)')]"
            ".some(e => e.textContent.includes('200×120, mostly yellow'))",
            timeout=30_000,
        )
        # It takes the page's width and uses Jupyter's theme variables, as in JupyterLab.
        width = page.evaluate(
            "document.querySelector('.visionchat-root').getBoundingClientRect().width"
        )
        assert width > 300
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "widget-notebook7.png"))
        # Notebook 7's dark theme: the widget follows it.
        page.evaluate(
            "window.jupyterapp.commands.execute('apputils:change-theme',"
            " {theme: 'JupyterLab Dark'})"
        )
        page.wait_for_function(
            "() => { const c = getComputedStyle(document.querySelector('.visionchat-root'))"
            ".backgroundColor.match(/\\d+/g).slice(0, 3).map(Number);"
            " return c[0] + c[1] + c[2] < 200; }",
            timeout=15_000,
        )
        page.screenshot(path=str(ARTIFACTS / "widget-notebook7-dark.png"))
    finally:
        context.close()
