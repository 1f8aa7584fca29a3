"""The private engine: one loop thread, reachable from any thread, restartable."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from visionchat.engine import Engine, get_engine, in_engine_thread, submit

SRC = str(Path(__file__).resolve().parents[1] / "src")


async def _where() -> tuple[str, int]:
    return threading.current_thread().name, id(asyncio.get_running_loop())


def test_submit_runs_on_the_engine_thread_and_reuses_one_loop() -> None:
    a = submit(_where()).result(10)
    b = submit(_where()).result(10)
    assert a[0] == "visionchat-engine"
    assert a == b
    assert not in_engine_thread()


def test_submit_from_many_threads_at_once() -> None:
    results: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(20):
            r = submit(_where()).result(10)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 160
    assert len(set(results)) == 1


def test_submit_works_while_the_caller_runs_its_own_loop() -> None:
    async def caller() -> str:
        # the caller's loop is running: awaiting the engine's future through it
        fut = submit(_where())
        name, _ = await asyncio.wrap_future(fut)
        return name

    assert asyncio.run(caller()) == "visionchat-engine"


def test_call_soon_and_run() -> None:
    engine = get_engine()
    seen = threading.Event()
    names: list[str] = []

    def cb() -> None:
        names.append(threading.current_thread().name)
        seen.set()

    engine.call_soon(cb)
    assert seen.wait(10)
    assert names == ["visionchat-engine"]
    assert engine.run(asyncio.sleep(0, result=7)) == 7


def test_blocking_run_from_the_engine_thread_is_refused() -> None:
    engine = get_engine()

    async def inside() -> str:
        coro = asyncio.sleep(0)
        try:
            engine.run(coro)
        except RuntimeError as exc:
            return str(exc)
        finally:
            coro.close()
        return "no error"

    assert "engine thread" in submit(inside()).result(10)


class _Closeable:
    def __init__(self) -> None:
        self.closed = threading.Event()

    async def aclose(self) -> None:
        self.closed.set()


def test_shutdown_cancels_work_closes_providers_and_restarts_on_next_use() -> None:
    engine = Engine(name="test-engine")
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    fut = engine.submit(forever())
    assert started.wait(10)
    closeable = _Closeable()
    engine.register_closeable(closeable)
    first_thread = engine._thread
    engine.shutdown(timeout=5)
    assert fut.cancelled()
    assert closeable.closed.is_set()
    assert first_thread is not None and not first_thread.is_alive()
    assert not engine.running
    # used again: a fresh thread and loop
    name, _loop_id = engine.submit(_where()).result(10)
    assert name == "test-engine"
    assert engine._thread is not first_thread
    engine.shutdown()
    engine.shutdown()  # twice is harmless


def test_interpreter_exit_with_a_turn_running_is_prompt_and_closes_providers() -> None:
    code = textwrap.dedent(
        """
        import asyncio, threading
        from visionchat.engine import get_engine
        class C:
            async def aclose(self):
                print("closed", flush=True)
        c = C()
        get_engine().register_closeable(c)
        started = threading.Event()
        async def forever():
            started.set()
            await asyncio.sleep(3600)
        get_engine().submit(forever())
        started.wait(10)
        print("exiting", flush=True)
        """
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["exiting", "closed"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_engine() -> None:
    assert submit(_where()).result(10)[0] == "visionchat-engine"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the parent's engine thread does not exist here
        try:
            name, _ = submit(_where()).result(10)
            os.write(w, name.encode())
        finally:
            os._exit(0)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    got = os.read(r, 100).decode()
    os.close(r)
    assert status == 0
    assert got == "visionchat-engine"
