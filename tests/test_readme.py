"""The README's Python examples run, top to bottom, as a reader would paste them.

They run in a fresh interpreter against the emulator (both backends pointed at it
through the environment, as the README describes), so an example that drifts from
the API fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from visionchat.testing import Emulator

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_python_example_in_the_readme_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 4
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONEMIN", "ONE_MIN", "OPENAI"))}
    with Emulator(api_key="readme-key") as emu:
        env.update(
            ONEMIN_API_KEY="readme-key",
            ONEMIN_BASE_URL=emu.base_url,
            OPENAI_API_KEY="readme-key",
            OPENAI_BASE_URL=emu.base_url + "/v1",
            MPLBACKEND="Agg",
        )
        run = subprocess.run(
            [sys.executable, "-c", "\n\n".join(blocks)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert emu.requests, "the examples never reached the emulator"
    assert (tmp_path / "chat.json").exists()  # conv.save in the tour
    assert "readme-key" not in (tmp_path / "chat.json").read_text()
