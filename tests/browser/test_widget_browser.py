"""The widget in a real JupyterLab in headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_widget_flow import ask

pytestmark = pytest.mark.browser

SETUP = """
import visionchat
from visionchat.widget import ChatWidget
from visionchat.providers.offline import OfflineProvider
from PIL import Image
conv = visionchat.Conversation(provider=OfflineProvider(words_per_second={wps}))
w = ChatWidget(conv, Image.new("RGB", (320, 200), (220, 30, 30)))
w
"""


def test_widget_renders_and_answers_a_question(open_notebook) -> None:
    nb = open_notebook("render.ipynb", [SETUP.format(wps=0)])
    nb.run_all()
    page = nb.page
    nb.wait_for(".visionchat-root")
    # the attached image shows as a preview with the size actually sent
    page.locator(".visionchat-previews .visionchat-thumb img").wait_for()
    assert "320×200" in page.locator(".visionchat-previews").inner_text()
    ask(nb, "What colour is this? Show the measurements as a table.")
    answer = page.locator(".visionchat-assistant .visionchat-body").last
    answer.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.visionchat-assistant')]"
        ".some(e => e.textContent.includes('offline demo model'))",
        timeout=30_000,
    )
    text = answer.inner_text()
    assert "red" in text and "320×200" in text
    # the table asked for renders as a real table
    assert answer.locator("table tr").count() >= 7
    # the user's message carries its thumbnail; the composer is empty again
    assert page.locator(".visionchat-user .visionchat-thumb img").count() == 1
    assert page.locator(".visionchat-previews .visionchat-thumb").count() == 0
    nb.screenshot("widget-light")
    # the README's picture: the question with its thumbnail at the top
    page.evaluate("document.querySelector('.visionchat-transcript').scrollTop = 0")
    nb.screenshot_of(".visionchat-root", "widget-only-light")

    # Click the sent thumbnail: the viewer shows the image as sent, full size.
    page.locator(".visionchat-user .visionchat-thumb-open").click()
    viewer = page.locator(".visionchat-viewer")
    viewer.wait_for(state="visible")
    page.wait_for_function(
        "() => document.querySelector('.visionchat-viewer img').naturalWidth === 320",
        timeout=15_000,
    )
    assert viewer.locator("figcaption").inner_text().startswith("320×200 px as sent · PNG")
    assert page.evaluate("document.activeElement.className") == "visionchat-viewer-close"
    nb.screenshot("widget-viewer")
    page.keyboard.press("Escape")
    viewer.wait_for(state="hidden")
    # focus went back to the thumbnail, and JupyterLab did not take the Escape
    assert page.evaluate("document.activeElement.className") == "visionchat-thumb-open"


def test_dark_theme(open_notebook) -> None:
    nb = open_notebook("dark.ipynb", [SETUP.format(wps=0)], theme="dark")
    nb.run_all()
    nb.wait_for(".visionchat-root")
    ask(nb, "describe")
    nb.page.locator(".visionchat-assistant").first.wait_for(timeout=30_000)
    nb.page.wait_for_timeout(300)
    bg = nb.page.evaluate(
        "getComputedStyle(document.querySelector('.visionchat-root')).backgroundColor"
    )
    # JupyterLab Dark's layout colour is dark: the widget follows the theme
    r, g, b = (int(x) for x in bg[bg.index("(") + 1 : bg.index(")")].split(",")[:3])
    assert r + g + b < 200, bg
    nb.screenshot("widget-dark")
    nb.screenshot_of(".visionchat-root", "widget-only-dark")


AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
_AXE_RUN = """async () => {
    const r = await axe.run(document.querySelector('.visionchat-root'), {
        runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}});
    return r.violations.map(v => ({id: v.id, impact: v.impact,
        nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': ' + n.failureSummary)}));
}"""


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_no_accessibility_violations(open_notebook, theme: str) -> None:
    """axe-core's WCAG 2.1 A/AA rules (labels, roles, contrast...) over the whole widget."""
    assert AXE.exists(), "axe-core is a dev dependency of the front end: run npm install"
    nb = open_notebook(f"a11y-{theme}.ipynb", [SETUP.format(wps=0)], theme=theme)
    nb.run_all()
    page = nb.page
    nb.wait_for(".visionchat-root")
    ask(nb, "Show the measurements as a table, with the colours")
    page.wait_for_function(
        "() => document.querySelector('.visionchat-assistant:not(.visionchat-streaming) table')",
        timeout=30_000,
    )
    page.add_script_tag(path=str(AXE))
    assert page.evaluate(_AXE_RUN) == [], json.dumps(page.evaluate(_AXE_RUN), indent=1)
    page.locator(".visionchat-user .visionchat-thumb-open").click()  # the viewer, open
    page.locator(".visionchat-viewer").wait_for(state="visible")
    violations = page.evaluate(_AXE_RUN)
    assert violations == [], json.dumps(violations, indent=1)


def test_a_long_conversation_shows_whole_and_in_order(open_notebook) -> None:
    """Its settled messages travel in two parts (earlier and recent); the page joins them."""
    cell = (
        "import visionchat\n"
        "from visionchat.providers.offline import OfflineProvider\n"
        "conv = visionchat.Conversation(provider=OfflineProvider(words_per_second=0))\n"
        "for i in range(15):\n"
        "    conv.ask(f'question {i}', show=False)\n"
        "w = visionchat.chat(conversation=conv)\n"
        "assert w.history and w.history_recent\n"
        "w"
    )
    nb = open_notebook("long.ipynb", [cell])
    nb.run_all()
    page = nb.page
    nb.wait_for(".visionchat-root")
    page.wait_for_function(
        "() => document.querySelectorAll('.visionchat-transcript .visionchat-msg').length === 30",
        timeout=30_000,
    )
    users = page.locator(".visionchat-user .visionchat-body").all_inner_texts()
    assert users == [f"question {i}" for i in range(15)]
    # one more turn from the page lands after them
    ask(nb, "question 15")
    page.wait_for_function(
        "() => document.querySelectorAll('.visionchat-transcript .visionchat-msg').length === 32",
        timeout=30_000,
    )
    users = page.locator(".visionchat-user .visionchat-body").all_inner_texts()
    assert users[-1] == "question 15" and len(users) == 16
