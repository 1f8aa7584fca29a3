"""Driving a real Jupyter kernel the way a front end does (no tests here).

``jupyter_client`` rather than nbclient where it matters: nbclient sends one
cell at a time, so it cannot reproduce Run All, where several execute
requests are already queued in the kernel while a cell runs.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

TESTS = Path(__file__).resolve().parent

SETUP = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from test_conversation_fakes import FakeProvider, make_image
from visionchat.conversation import Conversation
from visionchat.providers.offline import OfflineProvider
"""


@dataclass
class Cell:
    msg_id: str
    reply: dict[str, Any] | None = None
    iopub: list[dict[str, Any]] = field(default_factory=list)
    idle: bool = False

    @property
    def status(self) -> str:
        assert self.reply is not None
        return str(self.reply["content"]["status"])

    @property
    def stdout(self) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.iopub
            if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
        )

    @property
    def stderr(self) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.iopub
            if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"
        )

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.iopub if m["msg_type"] in types]

    def final_markdown(self) -> list[str]:
        """The Markdown outputs as they stand at the end, in display order."""
        order: list[str] = []
        latest: dict[str, str] = {}
        for m in self.of_type("display_data", "update_display_data"):
            data = m["content"]["data"]
            if "text/markdown" not in data:
                continue
            did = m["content"].get("transient", {}).get("display_id") or m["header"]["msg_id"]
            if did not in latest:
                order.append(did)
            latest[did] = data["text/markdown"]
        return [latest[d] for d in order]

    def error_text(self) -> str:
        errs = self.of_type("error")
        if not errs:
            return ""
        c = errs[0]["content"]
        return f"{c['ename']}: {c['evalue']}\n" + "\n".join(c["traceback"])


class Kernel:
    """One kernel and its client; ``run`` executes cells and gathers their messages."""

    def __init__(self) -> None:
        self.km: KernelManager
        self.kc: BlockingKernelClient
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(TESTS))
        cell = self.run(SETUP)
        assert cell.status == "ok", cell.error_text()

    def send(self, code: str) -> Cell:
        return Cell(self.kc.execute(code, stop_on_error=True))

    def collect(self, cells: list[Cell], timeout: float = 120) -> list[Cell]:
        by_id = {c.msg_id: c for c in cells}
        deadline = time.monotonic() + timeout
        while not all(c.idle and c.reply is not None for c in cells):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    "kernel did not finish: " + repr([(c.idle, c.reply) for c in cells])
                )
            with contextlib.suppress(queue.Empty):
                msg = self.kc.get_iopub_msg(timeout=0.05)
                cell = by_id.get(msg["parent_header"].get("msg_id", ""))
                if cell is not None:
                    if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                        cell.idle = True
                    else:
                        cell.iopub.append(msg)
            with contextlib.suppress(queue.Empty):
                msg = self.kc.get_shell_msg(timeout=0.001)
                cell = by_id.get(msg["parent_header"].get("msg_id", ""))
                if cell is not None:
                    cell.reply = msg
        return cells

    def run(self, code: str, timeout: float = 120) -> Cell:
        return self.collect([self.send(code)], timeout)[0]

    def wait_for_iopub(self, cell: Cell, msg_type: str, timeout: float = 60) -> dict[str, Any]:
        """Block until ``cell`` publishes a message of ``msg_type``; keeps everything seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                msg = self.kc.get_iopub_msg(timeout=0.05)
                if msg["parent_header"].get("msg_id") == cell.msg_id:
                    if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                        cell.idle = True
                    else:
                        cell.iopub.append(msg)
                    if msg["msg_type"] == msg_type:
                        return msg
        raise TimeoutError(f"no {msg_type} from the cell")

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@contextlib.contextmanager
def kernel() -> Iterator[Kernel]:
    k = Kernel()
    try:
        yield k
    finally:
        k.close()
