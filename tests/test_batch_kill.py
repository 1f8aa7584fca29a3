"""A batch killed with SIGKILL mid-way, then run again: every row once, nothing asked twice
but what was in flight when the process died."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from visionchat.testing import Emulator

KEY = "test-key-for-kill"
N, CONCURRENCY = 24, 3

SCRIPT = """
import json, sys
import visionchat
table = visionchat.batch(sys.argv[1], "What colour is this?", provider="1min",
                         api_key=sys.argv[2], base_url=sys.argv[3], cache=sys.argv[4],
                         concurrency=int(sys.argv[5]), rate_limit=3000, progress=False)
print(json.dumps({"rows": table[["name", "answer", "cached", "error"]].to_dict("records")}))
"""


def cached_images(cache: Path) -> set[str]:
    if not cache.exists():
        return set()
    db = sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=5)
    try:
        return {r[0] for r in db.execute("SELECT image_sha256 FROM answers")}
    except sqlite3.OperationalError:  # the table is not created yet
        return set()
    finally:
        db.close()


def asked(emu: Emulator) -> list[str]:
    """The sha256 of the image in each chat request, in order."""
    with emu._lock:
        uploads = {k: hashlib.sha256(v).hexdigest() for k, v in emu.uploads.items()}
        chats = [r.json for r in emu.requests if r.path == "/api/chat-with-ai"]
    return [uploads[c["promptObject"]["attachments"]["images"][0]] for c in chats]


@pytest.mark.timeout(180)
def test_sigkill_mid_batch_then_rerun_gets_every_row_once(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(N):
        Image.new("RGB", (50 + i, 40), (10 * i, 100, 200 - 5 * i)).save(folder / f"{i:02d}.png")
    cache = tmp_path / "answers.sqlite"
    script = tmp_path / "run_batch.py"
    script.write_text(SCRIPT)
    with Emulator(api_key=KEY, latency=(0.2, 0.4)) as emu:
        args = [
            sys.executable,
            str(script),
            str(folder),
            KEY,
            emu.base_url,
            str(cache),
            str(CONCURRENCY),
        ]
        child = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ
        )
        deadline = time.monotonic() + 60
        while len(cached_images(cache)) < N // 3:
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the batch made no progress"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        time.sleep(0.5)  # requests the dead process had sent reach the emulator's log
        done_before = cached_images(cache)
        asked_before = set(asked(emu))
        in_flight = asked_before - done_before
        assert 0 < len(done_before) < N
        assert len(in_flight) <= CONCURRENCY

        rerun = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        assert rerun.returncode == 0, rerun.stderr
        rows = json.loads(rerun.stdout.strip().splitlines()[-1])["rows"]
        every = asked(emu)

    assert [r["name"] for r in rows] == [str(folder / f"{i:02d}.png") for i in range(N)]
    assert all(r["error"] is None and r["answer"] for r in rows)
    for i, row in enumerate(rows):  # each row answers about its own image
        assert f"{50 + i}×40" in row["answer"]
    assert sum(r["cached"] for r in rows) == len(done_before)
    counts = {sha: every.count(sha) for sha in set(every)}
    assert len(counts) == N  # every image was asked
    twice = {sha for sha, n in counts.items() if n > 1}
    assert twice <= in_flight  # only what was in flight at the kill was asked again
    assert max(counts.values()) <= 2
