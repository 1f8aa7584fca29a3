"""visionchat keeps working in a kernel where the user ran ``nest_asyncio.apply()``.

Other libraries tell users to patch the kernel's loop; with nest_asyncio 1.6 on
ipykernel 7 that patch is known to stop queued cells from running when a cell
itself enters the loop.  visionchat never enters the kernel's loop (its turns
run on a private engine thread), so Run All must still run every cell in order.
A kernel of its own: the patch cannot be undone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from test_kernel_helpers import Kernel, kernel

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def k() -> Iterator[Kernel]:
    with kernel() as kern:
        patched = kern.run("import nest_asyncio\nnest_asyncio.apply()\nprint('patched')")
        assert patched.stdout.strip() == "patched", patched.error_text()
        yield kern


def test_run_all_after_nest_asyncio_apply(k: Kernel) -> None:
    k.run("q = Conversation(provider=FakeProvider(words=60, delay=0.01))")
    cells = [
        k.send("r1 = q.ask('first, slowly')\nprint('one', r1.text.split(' |')[0])"),
        k.send("print('two')"),
        k.send("r3 = await q.ask_async('third')\nprint('three', r3.text.split(' |')[0])"),
        k.send("print('four', len(q.messages))"),
        k.send(
            "import threading\n"
            "out = []\n"
            "t = threading.Thread(target=lambda: out.append(q.ask('fifth', show=False)))\n"
            "t.start(); t.join(60)\n"
            "print('five', out[0].text.split(' |')[0])"
        ),
    ]
    k.collect(cells)
    for c in cells:
        assert c.status == "ok", c.error_text()
    assert [c.stdout.strip() for c in cells] == [
        "one echo first, slowly",
        "two",
        "three echo third",
        "four 4",
        "five echo fifth",
    ]
