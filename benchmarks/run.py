"""Run every benchmark in this folder, one after another, in one process each.

    python benchmarks/run.py            # all of them
    python benchmarks/run.py images     # only bench_images.py

Each ``bench_*.py`` prints its own figures beside a baseline measured in the same
run, as ratios; nothing here compares against numbers from another machine.
A separate process per benchmark keeps one's warm caches and threads out of
another's figures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    wanted = set(argv)
    every = sorted(HERE.glob("bench_*.py"))
    scripts = [s for s in every if not wanted or s.stem.removeprefix("bench_") in wanted]
    if not scripts:
        names = ", ".join(s.stem.removeprefix("bench_") for s in every)
        print(f"no benchmark named {' '.join(sorted(wanted))}; have: {names}")
        return 2
    failed = []
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        if subprocess.run([sys.executable, str(script)], check=False).returncode != 0:
            failed.append(script.stem)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
