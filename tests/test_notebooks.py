"""Every notebook in notebooks/ runs top to bottom, offline, in a real kernel."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.kernel
NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert "quickstart.ipynb" in names and len(names) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_offline(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("ONEMIN_API_KEY", "ONE_MIN_AI_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("VISIONCHAT_OFFLINE_WPS", "0")  # the demo model at full speed
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells), f"{path.name} is committed with outputs"
    shutil.copy(path, tmp_path / path.name)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()  # raises CellExecutionError on any error
    answers = [
        o
        for c in nb.cells
        for o in c.get("outputs", [])
        if "offline demo model" in o.get("data", {}).get("text/markdown", "")
    ]
    assert answers, "no answer from the offline model was shown"
