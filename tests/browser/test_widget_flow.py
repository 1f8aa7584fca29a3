"""Issue 9's end-to-end flow: stream, Stop, answer while a cell runs, Retry, inert HTML, no key."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .conftest import SECRET

pytestmark = pytest.mark.browser

CELLS = [
    "import visionchat\nfrom PIL import Image\n"
    "conv = visionchat.Conversation(provider='1min')\n"
    "w = visionchat.chat(Image.new('RGB', (300, 180), (20, 160, 60)), conversation=conv)\nw",
    "import time\ntime.sleep(20)\nprint('slept')",
]


def ask(nb: Any, text: str) -> None:
    box = nb.page.locator(".visionchat-input")
    box.fill(text)
    box.press("Enter")


def assistant_texts(nb: Any) -> list[str]:
    return nb.page.locator(".visionchat-assistant .visionchat-body").all_inner_texts()


def wait_answer_containing(nb: Any, words: str, timeout: float = 30) -> None:
    nb.page.wait_for_function(
        "(w) => [...document.querySelectorAll('.visionchat-assistant:not(.visionchat-streaming)')]"
        ".some(e => e.textContent.includes(w))",
        arg=words,
        timeout=timeout * 1000,
    )


def test_stream_stop_busy_kernel_retry_and_inert_html(
    open_notebook: Any, service: Any, lab: Any
) -> None:
    nb = open_notebook("flow.ipynb", CELLS)
    page = nb.page
    nb.run_cell(0)
    nb.wait_for(".visionchat-root")
    nb.wait_for(".visionchat-previews .visionchat-thumb img")

    # 1. The reply streams in: the streaming message grows while it is still streaming.
    service.chunk_delay = 0.15
    ask(nb, "Describe the image, slowly")
    streaming = page.locator(".visionchat-streaming .visionchat-body")
    streaming.wait_for(timeout=30_000)
    page.wait_for_function(
        "() => (document.querySelector('.visionchat-streaming .visionchat-body')"
        "?.textContent || '').length > 20",
        timeout=30_000,
    )
    first = streaming.inner_text()
    page.wait_for_function(
        "(n) => (document.querySelector('.visionchat-streaming .visionchat-body')"
        "?.textContent || '').length > n",
        arg=len(first) + 5,
        timeout=30_000,
    )
    assert page.locator(".visionchat-streaming").count() == 1  # still streaming
    nb.screenshot("flow-streaming")
    # Enter while it streams: nothing is lost, and the widget says why nothing was sent.
    ask(nb, "a question typed too early")
    assert "still arriving" in page.locator(".visionchat-inline-error").inner_text()
    assert page.locator(".visionchat-input").input_value() == "a question typed too early"
    page.locator(".visionchat-input").fill("")

    # 2. Stop mid-stream: the partial text stays, marked as stopped.
    page.locator(".visionchat-stop").click()
    page.wait_for_function("() => !document.querySelector('.visionchat-streaming')", timeout=30_000)
    stopped = page.locator(".visionchat-assistant").last
    assert "stopped" in stopped.locator(".visionchat-facts").inner_text()
    partial = stopped.locator(".visionchat-body").inner_text()
    full = "".join(list(service.records.values())[-1]["aiRecordDetail"]["resultObject"])
    assert partial and len(partial) < len(full) and full.startswith(partial.split("\n")[0][:20])

    # 3. Ask while another cell sleeps: the answer streams before the cell ends.
    service.chunk_delay = 0.02
    nb.run_cell(1)
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
        " === 'busy'",
        timeout=10_000,
    )
    started = time.monotonic()
    ask(nb, "Asked while the kernel is busy")
    wait_answer_containing(nb, "Asked while the kernel is busy", timeout=15)
    # The sleeping cell has not finished: no output yet, and its prompt still shows [*].
    sleeper = page.locator(".jp-Notebook .jp-Cell").nth(1)
    assert "slept" not in sleeper.locator(".jp-OutputArea").inner_text()
    assert "*" in sleeper.locator(".jp-InputPrompt").inner_text()
    assert time.monotonic() - started < 20
    nb.screenshot("flow-answered-while-busy")
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-Notebook .jp-Cell')[1].textContent.includes('slept')",
        timeout=40_000,
    )

    # 4. An injected failure mid-stream, then Retry.
    service.add_fault("cut", after_chunks=4)
    ask(nb, "This one breaks")
    retry = page.locator(".visionchat-retry")
    retry.wait_for(timeout=30_000)
    assert (
        "stopped part-way"
        in page.locator(".visionchat-transcript .visionchat-error").last.inner_text()
    )
    retry.click()
    wait_answer_containing(nb, "This one breaks")
    assert page.locator(".visionchat-retry").count() == 0

    # 5. Model output carrying script stays inert.
    service.next_answer = (
        "Here: <script>window.__pwned = 1</script>"
        '<img src="x" onerror="window.__pwned = 2">'
        "[click me](javascript:window.__pwned=3) "
        '<a href="javascript:window.__pwned=4">or me</a> done'
    )
    ask(nb, "Say something dangerous")
    wait_answer_containing(nb, "done")
    root = page.locator(".visionchat-root")
    assert root.locator("script").count() == 0
    assert root.locator("[onerror]").count() == 0
    for href in root.locator("a").evaluate_all("as => as.map(a => a.getAttribute('href') || '')"):
        assert "javascript:" not in href.lower()
    for link in root.locator(".visionchat-body a").all():
        link.click(modifiers=["Control"])  # would run the script if it survived
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__pwned") is None
    nb.screenshot("flow-inert-html")

    # 6. Attach an image from the computer (the file picker), see its preview, ask.
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (123, 45), (255, 255, 0)).save(buf, format="PNG")
    page.locator(".visionchat-file").set_input_files(
        files=[{"name": "yellow.png", "mimeType": "image/png", "buffer": buf.getvalue()}]
    )
    page.wait_for_function(
        "() => document.querySelector('.visionchat-previews')?.textContent.includes('123×45')",
        timeout=15_000,
    )
    ask(nb, "What is in the attached file?")
    wait_answer_containing(nb, "123×45, mostly yellow")
    assert page.locator(".visionchat-previews .visionchat-thumb").count() == 0

    # 7. Save the notebook: the key is in no file.
    nb.save()
    page.wait_for_timeout(1000)
    for path in lab.root.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="ignore"), path
    saved = (lab.root / "flow.ipynb").read_text()
    assert "application/vnd.jupyter.widget-view+json" in saved  # the widget was saved
