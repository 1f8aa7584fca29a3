"""`pip install .` from a clean source tree gives a package whose front end loads.

The bundle is not committed: building the wheel must run the esbuild build and
ship its output. The tree is copied without any built bundle (node_modules is
linked in, so npm has nothing to download), built into a wheel as pip does, and
the wheel is installed into an empty folder where the widget must find its
JavaScript and CSS.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".venv", "node_modules", "dist", "build", "test-artifacts", ".git"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n in SKIP or n.endswith((".egg-info", "_cache"))}
    if Path(folder).name == "visionchat" and "static" in names:
        skipped.add("static")  # the built bundle: the wheel build must make it
    return skipped | {n for n in names if n == "__pycache__"}


@pytest.mark.timeout(600)
def test_a_wheel_built_from_a_clean_tree_ships_a_front_end_that_loads(tmp_path: Path) -> None:
    src = tmp_path / "src-tree"
    shutil.copytree(ROOT, src, ignore=_ignore)
    assert not (src / "src" / "visionchat" / "static").exists()
    if (ROOT / "node_modules").is_dir():
        (src / "node_modules").symlink_to(ROOT / "node_modules")
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("visionchat-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "visionchat/static/widget.js",
        "visionchat/static/widget.css",
        "visionchat/py.typed",
    ):
        assert needed in names, needed

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=120,
    )
    probe = (
        f"import sys; sys.path.insert(0, {str(target)!r})\n"
        "import visionchat.widget as w\n"
        f"assert w.__file__.startswith({str(target)!r}), w.__file__\n"
        "js = w._bundle('widget.js')\n"
        "text = js.read_text()\n"
        "assert 'visionchat-root' in text and 'not built' not in text\n"
        "print(len(text))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    assert int(run.stdout) > 100_000  # the whole bundle, not the fallback message
