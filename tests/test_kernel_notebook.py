"""A notebook using the Conversation, executed by nbclient as CI executes notebooks.

What matters here is what a saved notebook holds afterwards: the streamed
answer left behind as ordinary Markdown outputs, a valid nbformat document, and
a conversation file that loads back with its images.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from test_kernel_helpers import SETUP, TESTS

pytestmark = pytest.mark.kernel


def executed(*cells: str) -> nbformat.NotebookNode:
    """A notebook of SETUP and ``cells``, run top to bottom in a real kernel."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (SETUP, *cells)]
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(TESTS)}}
    ).execute()
    return nb


def test_a_notebook_asks_saves_and_loads(tmp_path: Path) -> None:
    chat = tmp_path / "chat.json"
    nb = executed(
        "conv = Conversation(provider=FakeProvider(words=200, delay=0.001))\n"
        "reply = conv.ask('what is in the picture?', make_image((10, 200, 10)))",
        f"conv.save({str(chat)!r})",
        f"loaded = Conversation.load({str(chat)!r}, provider=FakeProvider(words=5))\n"
        "assert loaded.messages == conv.messages\n"
        "assert loaded.messages[0].images[0].data == conv.messages[0].images[0].data\n"
        "more = await loaded.ask_async('and the colour?')\n"
        "print(loaded.turns, more.text.split(' |')[0])",
        "conv.cost()",
    )
    nbformat.validate(nb)
    ask_cell, _, load_cell, cost_cell = nb.cells[1:]
    markdown = [
        o["data"]["text/markdown"] for o in ask_cell.outputs if o["output_type"] == "display_data"
    ]
    assert "".join(markdown).startswith("echo what is in the picture? | images=1 |")
    assert "".join(markdown).endswith(" w200")
    assert all("text/plain" in o["data"] for o in ask_cell.outputs)
    assert [o["text"] for o in load_cell.outputs if o["output_type"] == "stream"] == [
        "2 echo and the colour?\n"
    ]
    table = cost_cell.outputs[0]["data"]
    assert "<table" in table["text/html"] and "total" in table["text/plain"]
    assert chat.exists()


def test_a_context_notice_shows_once_in_the_output_and_not_on_stderr() -> None:
    nb = executed(
        "conv = Conversation(model='gpt-4o', provider=FakeProvider(context_tokens=100,"
        " words=20))\n"
        "for i in range(3):\n    conv.ask(f'question {i}', show=False)",
        "reply = conv.ask('last')\nassert reply.notices",
    )
    outputs = nb.cells[2].outputs
    stderr = "".join(o["text"] for o in outputs if o.get("name") == "stderr")
    shown = "".join(o["data"].get("text/markdown", "") for o in outputs if "data" in o)
    assert "oldest exchange" not in stderr
    assert "oldest exchange" in shown
