"""%%vision in a real kernel (nbclient), against the emulator over loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from visionchat.testing import Emulator

pytestmark = pytest.mark.kernel
SECRET = "vc-test-SECRET-key-0123456789abcdef"

CELLS = [
    "%load_ext visionchat",
    "%config InlineBackend.close_figures = False\n"
    "from PIL import Image\nimport numpy as np\nimport matplotlib.pyplot as plt\n"
    "red = Image.new('RGB', (60, 40), (220, 20, 20))\n"
    "arr = np.zeros((30, 50, 3))\ncolour = 'crimson'",
    "%%vision red\nWhat colour is this? I think {colour}.",
    "%%vision\nand now?",
    "%%vision --new arr\nstart again",
    "%%vision -c other red arr\ncompare them",
    "%vision -c other",
    "%vision -i red what is it",
    "%%vision nosuchthing\nwhat is it?",
    "%%vision -m gpt-99-imaginary red\nwhat is it?",
    "fig, ax = plt.subplots(figsize=(4, 3))\nax.plot([0, 1, 2], [2, 0, 1])",
    "%%vision\nwhat is odd in this plot?",
    "%%vision gcf\nand with gcf?",
    "%vision --help",
    "%%vision --bogus\nx",
    "import visionchat.magics as m\n"
    "print(sorted(m.conversations), len(m.conversations['default'].messages))",
    "import os\nos.makedirs('charts', exist_ok=True)\n"
    "for i in range(3): Image.new('RGB', (40 + i, 30), (0, 0, 255)).save(f'charts/c{i}.png')\n"
    "schema = {'colour': str, 'width': int}",
    "%%vision --each charts/*.png --schema schema --cache answers.sqlite\nWhich {colour}?",
    "%%vision --each nosuch/*.png\nwhat is it?",
    '%%vision --each red arr --schema \'{"width": "int"}\'\nHow wide?',
]


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path, Emulator]]:
    root = tmp_path_factory.mktemp("magic")
    with Emulator(api_key=SECRET) as emu:
        mp = pytest.MonkeyPatch()
        mp.setenv("ONEMIN_API_KEY", SECRET)
        mp.setenv("ONEMIN_BASE_URL", emu.base_url)
        mp.delenv("OPENAI_API_KEY", raising=False)
        mp.delenv("OPENAI_BASE_URL", raising=False)
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        try:
            NotebookClient(nb, timeout=120, kernel_name="python3",
                           resources={"metadata": {"path": str(root)}}).execute()  # fmt: skip
        finally:
            mp.undo()
        path = root / "saved.ipynb"
        nbformat.write(nb, path)
        yield nb, path, emu


def outputs(nb: Any, i: int) -> list[dict[str, Any]]:
    return list(nb.cells[i].outputs)


def markdown(nb: Any, i: int) -> str:
    return "".join(o.get("data", {}).get("text/markdown", "") for o in outputs(nb, i))


def stderr(nb: Any, i: int) -> str:
    return "".join(o.get("text", "") for o in outputs(nb, i) if o.get("name") == "stderr")


def stdout(nb: Any, i: int) -> str:
    return "".join(o.get("text", "") for o in outputs(nb, i) if o.get("name") == "stdout")


def test_answer_settles_as_markdown_with_the_image_and_interpolation(executed: Any) -> None:
    nb, _, _ = executed
    text = markdown(nb, 2)
    assert "I received 1 image" in text and "60×40, mostly red" in text
    assert "I think crimson" in text


def test_follow_up_continues_the_conversation(executed: Any) -> None:
    nb, _, _ = executed
    assert "message 2 in this conversation" in markdown(nb, 3)


def test_new_starts_afresh(executed: Any) -> None:
    nb, _, _ = executed
    text = markdown(nb, 4)
    assert "50×30" in text and "message 2" not in text


def test_named_conversations_and_reaching_them_from_python(executed: Any) -> None:
    nb, _, _ = executed
    assert "I received 2 images" in markdown(nb, 5)
    out = "".join(o.get("data", {}).get("text/plain", "") for o in outputs(nb, 6))
    assert "Conversation" in out
    assert "60×40" in markdown(nb, 7)
    assert "['default', 'other']" in stdout(nb, 15)


def test_errors_are_one_short_line(executed: Any) -> None:
    nb, _, _ = executed
    for i, words in ((8, "nosuchthing` is not defined"), (9, "does not offer this model")):
        assert words in stderr(nb, i)
        assert not any(o["output_type"] == "error" for o in outputs(nb, i))
        assert "Traceback" not in stderr(nb, i)
    assert "unrecognized arguments: --bogus" in stderr(nb, 14)


def test_open_figure_and_gcf(executed: Any) -> None:
    nb, _, _ = executed
    assert "current matplotlib figure" in stdout(nb, 11)
    assert "I received 1 image" in markdown(nb, 11) and "chart or diagram" in markdown(nb, 11)
    assert "I received 1 image" in markdown(nb, 12)


def test_help_documents_every_option(executed: Any) -> None:
    nb, _, _ = executed
    text = stdout(nb, 13)
    for option in ("--model", "--new", "--conversation", "--web", "--provider", "gcf", "{name}"):
        assert option in text


def test_each_leaves_the_table_as_output(executed: Any) -> None:
    nb, path, _ = executed
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs(nb, 17))
    assert "visionchat-batch" in html  # the progress line, settled at its final counts
    assert "3/3 answered" in html
    table = "".join(o.get("data", {}).get("text/plain", "") for o in outputs(nb, 17))
    for i in range(3):
        assert f"charts/c{i}.png" in table and f"{40 + i}" in table
    assert "blue" in table
    assert (path.parent / "answers.sqlite").exists()
    assert "No file matches 'nosuch/*.png'" in stderr(nb, 18)
    named = "".join(o.get("data", {}).get("text/plain", "") for o in outputs(nb, 19))
    assert "red" in named and "arr" in named and "60" in named and "50" in named


def test_saved_notebook_has_markdown_answers_and_no_key(executed: Any) -> None:
    _nb, path, emu = executed
    raw = path.read_text()
    assert SECRET not in raw
    saved = json.loads(raw)
    kinds = {k for c in saved["cells"] for o in c.get("outputs", []) for k in o.get("data", {})}
    assert "text/markdown" in kinds
    assert not any("application/vnd.jupyter.widget" in k for k in kinds)
    assert emu.billed_turns >= 7
