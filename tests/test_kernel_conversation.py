"""The Conversation inside a real ipykernel: cells, Run All, interrupts, threads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from test_kernel_helpers import Kernel, kernel

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def k() -> Iterator[Kernel]:
    with kernel() as kern:
        yield kern


def test_ask_in_a_cell_streams_markdown_and_leaves_it_behind(k: Kernel) -> None:
    cell = k.run(
        "conv = Conversation(provider=OfflineProvider(words_per_second=300))\n"
        "conv.ask('describe', make_image())"  # the last expression: shown once, not twice
    )
    assert cell.status == "ok", cell.error_text()
    text = k.run("print(conv.messages[-1].text)").stdout.rstrip("\n")
    assert text.startswith("**The image**: 64×48 px") and "offline demo model" in text
    assert "".join(cell.final_markdown()) == text
    # it streamed: the output was shown and updated with partial text first
    shown = cell.of_type("display_data", "update_display_data")
    partial = [m for m in shown if len(m["content"]["data"]["text/markdown"]) < len(text)]
    assert len(partial) >= 2
    assert not cell.of_type("execute_result")  # the Reply did not print the answer again
    # ...but showing the reply in a later cell does
    later = k.run("conv.last_reply")
    results = later.of_type("execute_result", "display_data")
    assert [m["content"]["data"]["text/markdown"] for m in results] == [text]


def test_interrupting_a_cell_keeps_the_partial_answer(k: Kernel) -> None:
    k.run("slow = Conversation(provider=OfflineProvider(words_per_second=5))")
    cell = k.send("r = slow.ask('long answer please')")
    k.wait_for_iopub(cell, "display_data")  # the answer has started to stream
    k.km.interrupt_kernel()
    k.collect([cell])
    assert cell.status == "error"
    assert cell.reply is not None and cell.reply["content"]["ename"] == "KeyboardInterrupt"
    assert "partial text is kept" in cell.reply["content"]["evalue"]
    notes = cell.final_markdown()
    assert "stopped" in notes[-1]
    check = k.run(
        "m = slow.messages[-1]\n"
        "print(m.interrupted, bool(m.text), 'offline demo' not in m.text, slow.busy,\n"
        "      slow.last_reply.interrupted, slow.last_reply.text == m.text)"
    )
    assert check.stdout.split() == ["True", "True", "True", "False", "True", "True"]
    shown = "".join(notes[:-1])
    text = k.run("print(slow.messages[-1].text)").stdout.rstrip("\n")
    assert shown == text, notes  # what the cell shows is what was kept
    # the conversation carries on
    again = k.run("slow.provider.words_per_second = 0\nprint(slow.retry().text.split()[-1])")
    assert again.stdout.strip() == "`Conversation`._"


def test_run_all_queued_cells_all_run_in_order(k: Kernel) -> None:
    k.run("q = Conversation(provider=FakeProvider(words=60, delay=0.01))")
    cells = [
        k.send("r1 = q.ask('first, slowly')\nprint('one', r1.text.split(' |')[0])"),
        k.send("print('two')"),
        k.send("r3 = await q.ask_async('third')\nprint('three', r3.text.split(' |')[0])"),
        k.send("print('four', len(q.messages))"),
    ]
    k.collect(cells)
    for c in cells:
        assert c.status == "ok", c.error_text()
    assert [c.stdout.strip() for c in cells] == [
        "one echo first, slowly",
        "two",
        "three echo third",
        "four 4",
    ]
    counts = [c.reply["content"]["execution_count"] for c in cells if c.reply]
    assert counts == sorted(counts) and len(set(counts)) == 4
    # ask_async in a cell shows its answer too
    assert "".join(cells[2].final_markdown()).startswith("echo third")


def test_ask_from_a_worker_thread_in_the_kernel(k: Kernel) -> None:
    cell = k.run(
        "import threading\n"
        "w = Conversation(provider=FakeProvider(words=50, delay=0.001))\n"
        "out = []\n"
        "t = threading.Thread(target=lambda: out.append(w.ask('from a thread', make_image())))\n"
        "t.start(); t.join(60)\n"
        "print(out[0].text.split(' |')[0], len(w.messages))"
    )
    assert cell.status == "ok", cell.error_text()
    assert cell.stdout.strip() == "echo from a thread 2"


def test_a_widget_style_submit_answers_while_a_cell_blocks(k: Kernel) -> None:
    cell = k.run(
        "import time\n"
        "s = Conversation(provider=FakeProvider(words=20))\n"
        "fut = s.submit('in the background')\n"
        "time.sleep(0.5)  # the cell blocks; the engine answers anyway\n"
        "print(fut.done(), fut.result(10).text.split(' |')[0])"
    )
    assert cell.status == "ok", cell.error_text()
    assert cell.stdout.strip() == "True echo in the background"


def test_save_and_load_round_trip_in_the_kernel(
    k: Kernel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("kernel") / "chat.json"
    cell = k.run(
        f"c = Conversation(provider=FakeProvider())\n"
        f"c.ask('look', make_image((1, 2, 3)), make_image((200, 100, 0), (40, 30)), show=False)\n"
        f"c.ask('and?', show=False)\n"
        f"c.save({str(path)!r})\n"
        f"d = Conversation.load({str(path)!r}, provider=FakeProvider())\n"
        f"print(d.messages == c.messages, [i.data for i in d.messages[0].images] == "
        f"[i.data for i in c.messages[0].images], d.turns)"
    )
    assert cell.status == "ok", cell.error_text()
    assert cell.stdout.split() == ["True", "True", "2"]


def test_both_network_backends_from_cells_over_loopback(k: Kernel) -> None:
    setup = k.run(
        "from visionchat.testing import Emulator\n"
        "emu = Emulator(api_key='kk').start()\n"
        "one = Conversation(provider='1min', api_key='kk', base_url=emu.base_url)\n"
        "oai = Conversation(provider='openai', api_key='kk', base_url=emu.base_url + '/v1')"
    )
    assert setup.status == "ok", setup.error_text()
    cells = [
        k.send("one.ask('what is this?', make_image())"),
        k.send("r = await oai.ask_async('and here?', make_image((0, 0, 250), (80, 60)))"),
        k.send(
            "print(one.turns, oai.turns, 'conversation_id' in one.session, "
            "'kk' not in repr(one) + repr(oai))\nemu.stop()"
        ),
    ]
    k.collect(cells)
    for c in cells:
        assert c.status == "ok", c.error_text()
    assert "64" in "".join(cells[0].final_markdown())
    assert "80" in "".join(cells[1].final_markdown())
    assert cells[2].stdout.split() == ["1", "1", "True", "True"]
