"""The one private event loop that runs every network turn in this process.

Why a thread of our own: a notebook cell already runs inside the kernel's
event loop, so ``asyncio.run`` cannot be called there, and patching that loop
(nest-asyncio) stops queued cells from ever running on ipykernel 7.  Instead
all async work (providers, their ``httpx.AsyncClient``, streaming) lives on a
daemon thread with its own loop.  Callers on any thread hand it a coroutine
and get a ``concurrent.futures.Future`` back; the loop is only ever touched
through ``run_coroutine_threadsafe`` / ``call_soon_threadsafe``.

The engine starts on first use, can be shut down (at interpreter exit
automatically) and starts again on the next use, and resets itself in a
forked child, whose copy of the thread does not exist.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

__all__ = ["Engine", "get_engine", "in_engine_thread", "submit"]

_log = logging.getLogger("visionchat.engine")

T = TypeVar("T")


class _Closeable(Protocol):
    async def aclose(self) -> None: ...


class Engine:
    """A daemon thread running one asyncio loop, started lazily."""

    def __init__(self, name: str = "visionchat-engine") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Objects (providers) whose connections belong to this loop: closed on
        # shutdown so no socket is left half-open when the interpreter exits.
        self._closeables: weakref.WeakSet[Any] = weakref.WeakSet()

    # -- lifecycle ---------------------------------------------------------

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def loop(self) -> asyncio.AbstractEventLoop:
        """The engine's loop, starting the thread if needed."""
        with self._lock:
            if self._loop is not None and self.running:
                return self._loop
            ready = threading.Event()
            loop = asyncio.new_event_loop()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                try:
                    loop.run_forever()
                finally:
                    try:
                        _cancel_all(loop)
                        loop.run_until_complete(loop.shutdown_asyncgens())
                    finally:
                        loop.close()

            thread = threading.Thread(target=run, name=self._name, daemon=True)
            thread.start()
            ready.wait()
            self._loop, self._thread = loop, thread
            return loop

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel what is running, close registered providers, stop the thread.

        Safe to call more than once and from any thread but the engine's own;
        the next ``submit`` starts a fresh engine.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or not thread.is_alive():
            return
        if threading.current_thread() is thread:
            raise RuntimeError("the engine cannot shut itself down from its own thread")
        closeables = list(self._closeables)
        self._closeables = weakref.WeakSet()

        async def wind_down() -> None:
            me = asyncio.current_task()
            others = [t for t in asyncio.all_tasks() if t is not me]
            for task in others:
                task.cancel()
            if others:
                await asyncio.wait(others, timeout=timeout / 2)
            for obj in closeables:
                try:
                    await asyncio.wait_for(obj.aclose(), timeout=timeout / 4)
                except Exception:  # a provider that fails to close must not block exit
                    _log.debug("closing %r at shutdown failed", obj, exc_info=True)

        fut = asyncio.run_coroutine_threadsafe(wind_down(), loop)
        with contextlib.suppress(Exception):
            fut.result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    def _forget_after_fork(self) -> None:
        # In a forked child the thread is gone; its loop must not be reused.
        self._lock = threading.Lock()
        self._loop = self._thread = None
        self._closeables = weakref.WeakSet()

    # -- use -----------------------------------------------------------------

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the engine; never blocks beyond starting the thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop())

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` on the engine thread as soon as possible."""
        self.loop().call_soon_threadsafe(fn, *args)

    def run(self, awaitable: Awaitable[T], timeout: float | None = None) -> T:
        """Block the calling thread until ``awaitable`` finished on the engine."""
        if self.in_thread():
            raise RuntimeError(
                "a blocking visionchat call was made on its engine thread (from a listener?); "
                "use Conversation.submit() there instead"
            )

        async def wrap() -> T:
            return await awaitable

        return self.submit(wrap()).result(timeout)

    def in_thread(self) -> bool:
        thread = self._thread
        return thread is not None and threading.current_thread() is thread

    def register_closeable(self, obj: _Closeable) -> None:
        """Close ``obj`` (``await obj.aclose()``) when the engine shuts down."""
        self._closeables.add(obj)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


_ENGINE = Engine()


def get_engine() -> Engine:
    """The process-wide engine."""
    return _ENGINE


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Run ``coro`` on the process-wide engine; see ``Engine.submit``."""
    return _ENGINE.submit(coro)


def in_engine_thread() -> bool:
    return _ENGINE.in_thread()


atexit.register(_ENGINE.shutdown, 2.0)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ENGINE._forget_after_fork)
