"""One question over many images, answered as a table, at the backend's rate limit.

Each image is its own turn with no shared history, so the turns are independent
and may run concurrently.  How many run at once is not the point: what a
service allows is a number of *requests a minute*, so every request passes a
``RateLimiter`` on the engine's loop (see ``ratelimit``), which paces them just
under the published limit and adapts when the service says 429.  A throttled
request waits and is sent again; a failed image becomes a row with its error;
nothing that finished is lost, because each answer is written to the optional
SQLite cache the moment it arrives, and a re-run of the same call sends only
the images that have no answer there yet.

The work runs on the one engine thread like every other turn (no thread per
image); the calling thread only shows progress and waits, so Ctrl-C stops the
batch cleanly and keeps every finished row.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import glob
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import cost as _cost
from . import schema as _schema
from ._batch_cache import BatchCache, CacheError, cache_key
from .conversation import _default_model, fit_image, image_limits, resolve_provider
from .engine import get_engine
from .errors import (
    AuthenticationError,
    ImageError,
    ModelNotFoundError,
    NotVisionCapableError,
    OutOfCreditsError,
    VisionChatError,
)
from .images import PreparedImage
from .providers.base import Provider, TextDelta, TurnRequest, TurnResult
from .ratelimit import RateLimiter

__all__ = [
    "BatchError",
    "BatchInterrupted",
    "BatchProgress",
    "CacheError",
    "CostLimitError",
    "batch",
]

#: File endings taken from a folder (what ``prepare_image`` reads).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".ppm", ".pgm"}
)
#: Published request limits a minute, by backend, where the backend has one.
#: OpenAI-compatible servers tell theirs in headers; 500 is OpenAI's first tier.
DEFAULT_RATE_LIMITS = {"1min": 180.0, "openai": 500.0}
#: Errors that every further image would meet too: the batch stops sending.
_FATAL = (AuthenticationError, OutOfCreditsError, ModelNotFoundError, NotVisionCapableError)


class BatchError(VisionChatError, ValueError):
    """The batch cannot start (no images, a bad argument); nothing was sent."""


class CostLimitError(BatchError):
    """The estimated cost is above ``max_cost``; nothing was sent."""


class BatchCacheMismatchWarning(UserWarning):
    """A cache file with answers, none of them to this question."""


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a batch; ``result`` holds every row that finished (the rest unsent)."""

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class BatchProgress:
    """Live counts of a running batch, read by progress displays from another thread."""

    total: int
    phase: str = "preparing"  # "preparing", "sending", "done", "stopped"
    prepared: int = 0
    unreadable: int = 0  # inputs that could not be prepared: rows with an error, never sent
    cached: int = 0
    to_send: int = 0
    answered: int = 0
    failed: int = 0  # sent (or stopped before sending) without an answer
    throttled: int = 0
    credits: float | None = None
    tokens: int | None = None
    estimated_price: float | None = None
    started: float = field(default_factory=time.monotonic)
    sending_since: float | None = None
    ended: float | None = None
    stop_reason: str | None = None

    @property
    def sent_done(self) -> int:
        return self.answered + self.failed

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def per_minute(self) -> float | None:
        """Images answered (or failed) a minute since sending began."""
        if self.sending_since is None or not self.sent_done:
            return None
        spent = (self.ended or time.monotonic()) - self.sending_since
        return 60.0 * self.sent_done / spent if spent > 0 else None

    @property
    def eta(self) -> float | None:
        rate = self.per_minute
        left = self.to_send - self.sent_done
        if rate is None or rate <= 0 or left <= 0:
            return None
        return 60.0 * left / rate

    def add_cost(self, credits: float | None, tokens: int | None) -> None:
        if credits is not None:
            self.credits = (self.credits or 0.0) + credits
        if tokens is not None:
            self.tokens = (self.tokens or 0) + tokens


@dataclass
class _Item:
    name: Any
    source: object
    image: PreparedImage | None = None
    key: str | None = None
    row: dict[str, Any] | None = None


# -- inputs ---------------------------------------------------------------------


def _expand_path(spec: str | os.PathLike[str]) -> list[tuple[Any, object]]:
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise BatchError(
                f"The folder {text!r} holds no image files (looked for "
                f"{', '.join(sorted(IMAGE_SUFFIXES))})."
            )
        return [(str(p), p) for p in files]
    if glob.has_magic(text):
        found = sorted(glob.glob(os.path.expanduser(text), recursive=True))
        files = [Path(f) for f in found if Path(f).is_file()]
        if not files:
            raise BatchError(f"No file matches {text!r}; check the pattern and the folder.")
        return [(str(p), p) for p in files]
    return [(text, path)]


def collect_inputs(images: object) -> list[tuple[Any, object]]:
    """(name, source) for each input, in order; see ``batch`` for what is taken."""
    if isinstance(images, str | os.PathLike):
        return _expand_path(images)
    module = type(images).__module__
    if module.startswith("pandas"):
        if type(images).__name__ == "DataFrame":
            raise BatchError(
                "batch() takes one column of a DataFrame, not the whole frame: "
                "batch(df['image'], ...)."
            )
        if hasattr(images, "items"):
            return list(images.items())
    if module.startswith("numpy"):
        raise BatchError(
            "batch() takes a list of images; for a stack of arrays pass list(stack), "
            "one array per image."
        )
    if isinstance(images, Mapping):
        return list(images.items())
    if isinstance(images, bytes | bytearray) or not isinstance(images, Iterable):
        raise BatchError(
            f"batch() takes many images (a list, a folder, a glob pattern, a pandas Series), "
            f"not one {type(images).__name__}; for one image use visionchat.ask(image, question)."
        )
    out: list[tuple[Any, object]] = []
    for i, item in enumerate(images):
        if isinstance(item, str | os.PathLike) and not str(item).startswith(("http:", "https:")):
            out.append((os.fspath(item), item))
        else:
            out.append((os.fspath(item) if isinstance(item, str) else i, item))
    return out


# -- the run (engine thread) ----------------------------------------------------


@dataclass
class _Plan:
    prompt: str
    model: str
    provider: Provider
    schema: dict[str, Any] | None
    items: list[_Item]
    cache: BatchCache | None
    max_cost: float | None
    concurrency: int
    web_search: bool
    repair: bool
    progress: BatchProgress
    columns: list[str]
    owns_provider: bool = True
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def backend(self) -> str:
        """The backend's short name: part of every cache key."""
        return str(getattr(self.provider, "name", type(self.provider).__name__))

    @property
    def full_prompt(self) -> str:
        if self.schema is None:
            return self.prompt
        return f"{self.prompt}\n\n{_schema.instruction(self.schema)}"


def _empty_row(plan: _Plan, item: _Item) -> dict[str, Any]:
    row: dict[str, Any] = {"name": item.name}
    row.update(dict.fromkeys(plan.columns))
    row.update(
        answer=None, model=plan.model, credits=None, input_tokens=None, output_tokens=None,
        cached=False, error=None,
    )  # fmt: skip
    return row


async def _prepare_all(plan: _Plan) -> None:
    limits = image_limits(plan.provider.model_info(plan.model))
    gate = asyncio.Semaphore(max(1, min(4, os.cpu_count() or 1)))

    async def one(item: _Item) -> None:
        async with gate:
            try:
                # Decoding and resizing are CPU work: off the loop, a few at a time.
                item.image = await asyncio.to_thread(fit_image, item.source, limits)
            except Exception as exc:
                row = _empty_row(plan, item)
                row["error"] = (
                    str(exc)
                    if isinstance(exc, ImageError)
                    else (f"could not read this image ({type(exc).__name__}: {exc})")
                )
                item.row = row
                plan.progress.unreadable += 1
            plan.progress.prepared += 1

    await asyncio.gather(*(one(i) for i in plan.items))


def _use_cache(plan: _Plan) -> list[_Item]:
    """Fill rows from the cache; the items still to send."""
    pending = [i for i in plan.items if i.image is not None]
    for item in pending:
        assert item.image is not None
        item.key = cache_key(item.image.sha256, plan.prompt, plan.model, plan.backend, plan.schema)
    if plan.cache is None:
        return pending
    found = plan.cache.get_many(i.key for i in pending if i.key)
    if not found and len(plan.cache) and pending:
        warnings.warn(
            f"The batch cache {str(plan.cache.path)!r} holds {len(plan.cache)} answers, none "
            "to this prompt, model, backend and schema, so every image is sent. (Answers are "
            "kept per question: a changed prompt asks again.)",
            BatchCacheMismatchWarning,
            stacklevel=2,
        )
    left = []
    for item in pending:
        cached = found.get(item.key or "")
        if cached is None:
            left.append(item)
            continue
        row = _empty_row(plan, item)
        row.update({k: v for k, v in cached.items() if k in row and k != "name"})
        row["cached"] = True
        item.row = row
        plan.progress.cached += 1
    return left


def _check_cost(plan: _Plan, pending: list[_Item]) -> None:
    info = plan.provider.model_info(plan.model)
    total = 0.0
    known = True
    for item in pending:
        assert item.image is not None
        est = _cost.estimate_turn(
            plan.full_prompt, [(item.image.width, item.image.height)], plan.model, info
        )
        if est.price is None:
            known = False
        else:
            total += est.price
    plan.progress.estimated_price = total if known else None
    if plan.max_cost is None:
        return
    if not known:
        raise CostLimitError(
            f"No price is known for {plan.model}, so max_cost cannot be checked; nothing was "
            "sent. Pass max_cost=None to send anyway."
        )
    if total > plan.max_cost:
        raise CostLimitError(
            f"The {len(pending)} images to send are estimated at {total:,.4g} (the catalog's "
            f"price unit, input only) for {plan.model}, above max_cost={plan.max_cost:,.4g}; "
            "nothing was sent. Raise max_cost, pick a cheaper model, or send fewer images."
        )


async def _turn(
    plan: _Plan, prompt: str, image: PreparedImage, options: dict[str, Any]
) -> tuple[str, TurnResult | None]:
    parts: list[str] = []
    result = None
    request = TurnRequest(
        prompt=prompt, model=plan.model, images=[image], session={},
        web_search=plan.web_search, options=dict(options),
    )  # fmt: skip
    async for event in plan.provider.stream(request):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, TurnResult):
            result = event
    return "".join(parts), result


def _spend(row: dict[str, Any], result: TurnResult | None) -> None:
    if result is None:
        return
    row["model"] = result.model or row["model"]
    for key, value in (
        ("credits", result.credits),
        ("input_tokens", result.usage.input_tokens if result.usage else None),
        ("output_tokens", result.usage.output_tokens if result.usage else None),
    ):
        if value is not None:
            row[key] = (row[key] or 0) + value


async def _ask(plan: _Plan, item: _Item) -> dict[str, Any]:
    assert item.image is not None
    row = _empty_row(plan, item)
    options: dict[str, Any] = {"one_off": True}
    if plan.schema is not None and getattr(plan.provider, "name", "") == "openai":
        options["response_format"] = _schema.response_format(plan.schema)
    text, result = await _turn(plan, plan.full_prompt, item.image, options)
    _spend(row, result)
    row["answer"] = text
    if plan.schema is None:
        return row
    try:
        fields = _schema.parse_answer(text, plan.schema)
    except _schema.AnswerFormatError as first:
        if not plan.repair:
            row["error"] = f"The answer could not be read as the schema asks: {first.reason}."
            return row
        again = _schema.repair_prompt(plan.prompt, plan.schema, text, first.reason)
        text, result = await _turn(plan, again, item.image, options)
        _spend(row, result)
        row["answer"] = text
        try:
            fields = _schema.parse_answer(text, plan.schema)
        except _schema.AnswerFormatError as second:
            row["error"] = (
                f"The answer could not be read as the schema asks ({second.reason}), even "
                "after one request to correct it; the raw answer is in the answer column."
            )
            return row
    row.update({k: fields.get(k) for k in plan.columns})
    return row


async def _send_all(plan: _Plan, pending: list[_Item]) -> None:
    progress = plan.progress
    progress.to_send = len(pending)
    progress.phase = "sending"
    progress.sending_since = time.monotonic()
    queue = list(reversed(pending))
    limiter = getattr(plan.provider, "rate_limiter", None)

    async def worker() -> None:
        while queue and progress.stop_reason is None:
            item = queue.pop()
            try:
                row = await _ask(plan, item)
            except VisionChatError as exc:
                if isinstance(exc, _FATAL):
                    progress.stop_reason = str(exc)
                row = _empty_row(plan, item)
                row["error"] = str(exc)
                row["answer"] = getattr(exc, "partial_text", "") or None
            else:  # answered (a schema mismatch too: it was paid for), so kept
                if plan.cache is not None:
                    _cache_put(plan, item, row)
            item.row = row
            if row["error"] is None:
                progress.answered += 1
            else:
                progress.failed += 1
            progress.add_cost(row["credits"], _tokens(row))
            if isinstance(limiter, RateLimiter):
                progress.throttled = limiter.stats.throttled

    workers = [asyncio.ensure_future(worker()) for _ in range(min(plan.concurrency, len(pending)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    if progress.stop_reason is not None:
        for item in queue:
            row = _empty_row(plan, item)
            row["error"] = f"Not sent: the batch stopped because {progress.stop_reason}"
            item.row = row
            progress.failed += 1


def _tokens(row: dict[str, Any]) -> int | None:
    parts = [row["input_tokens"], row["output_tokens"]]
    present = [p for p in parts if p is not None]
    return sum(present) if present else None


def _cache_put(plan: _Plan, item: _Item, row: dict[str, Any]) -> None:
    assert plan.cache is not None and item.key and item.image is not None
    stored = {k: v for k, v in row.items() if k not in ("name", "cached")}
    try:
        plan.cache.put(item.key, item.image.sha256, plan.prompt, plan.model, plan.backend, stored)
    except CacheError as exc:
        row["error"] = str(exc)


async def _run(plan: _Plan) -> None:
    try:
        await _prepare_all(plan)
        pending = _use_cache(plan)
        _check_cost(plan, pending)
        if pending:
            await _send_all(plan, pending)
        plan.progress.phase = "done"
    except asyncio.CancelledError:
        plan.progress.phase = "stopped"
        raise
    finally:
        plan.progress.ended = time.monotonic()
        if plan.owns_provider:
            with contextlib.suppress(Exception):
                await plan.provider.aclose()
        plan.done.set()


# -- the table --------------------------------------------------------------------


def _table(plan: _Plan, source: object) -> Any:
    rows = []
    for item in plan.items:
        row = item.row
        if row is None:
            row = _empty_row(plan, item)
            row["error"] = "Not sent: the batch was interrupted before this image."
        rows.append(row)
    try:
        import pandas as pd
    except ImportError:
        return rows
    frame = pd.DataFrame(rows, columns=list(_empty_row(plan, plan.items[0]))) if rows else None
    if frame is None:
        return rows
    # Nullable column types: an integer field with a missing value stays integer.
    frame = frame.convert_dtypes()
    if type(source).__module__.startswith("pandas") and hasattr(source, "index"):
        frame.index = source.index
    frame.attrs["visionchat"] = summary(plan.progress)
    return frame


def summary(p: BatchProgress) -> dict[str, Any]:
    return {
        "images": p.total,
        "answered": p.answered + p.cached,
        "from_cache": p.cached,
        "failed": p.failed + p.unreadable,
        "throttled": p.throttled,
        "credits": p.credits,
        "tokens": p.tokens,
        "estimated_price": p.estimated_price,
        "seconds": round(p.elapsed, 3),
        "stopped": p.stop_reason,
    }


# -- the entry point ----------------------------------------------------------------


def batch(
    images: object,
    prompt: str,
    *,
    schema: Any = None,
    model: str | None = None,
    provider: str | Provider | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    api: str = "current",
    cache: str | os.PathLike[str] | None = None,
    max_cost: float | None = None,
    concurrency: int = 16,
    rate_limit: float | None = None,
    web_search: bool = False,
    repair: bool = True,
    progress: bool | Callable[[BatchProgress], None] | None = None,
) -> Any:
    """Ask ``prompt`` about each image on its own; the answers as a table.

    ``images``: a list (or any iterable) of what ``prepare_image`` takes, a
    dict or pandas Series (keys/index become names), a folder, or a glob
    pattern (``"plots/**/*.png"``).  Returns a pandas DataFrame when pandas is
    installed, else a list of dicts: one row per image, in order, with
    ``name``, the schema's fields, ``answer``, ``model``, ``credits``,
    ``input_tokens``, ``output_tokens``, ``cached`` and ``error``.

    ``schema`` (a dict of field -> type, a dataclass, a TypedDict or a JSON
    Schema) turns each answer into columns.  ``cache`` names an SQLite file
    that keeps every answer as it arrives: run the same call again after a
    crash or Ctrl-C and only the missing images are sent.  ``max_cost``
    refuses to start when the estimate is higher.  ``rate_limit`` overrides
    the backend's requests a minute (1min.ai: 180).  ``progress``: shown in a
    notebook or terminal by default; ``False`` hides it; a callable receives
    ``BatchProgress`` snapshots instead.
    """
    plan = _make_plan(
        images, prompt, schema=schema, model=model, provider=provider, api_key=api_key,
        base_url=base_url, api=api, cache=cache, max_cost=max_cost, concurrency=concurrency,
        rate_limit=rate_limit, web_search=web_search, repair=repair,
    )  # fmt: skip
    engine = get_engine()
    if engine.in_thread():
        raise VisionChatError("batch() blocks; it cannot run on visionchat's engine thread.")
    view = _view(progress)
    fut = engine.submit(_run(plan))
    try:
        return _wait(plan, fut, view, images)
    finally:
        if plan.cache is not None:
            plan.cache.close()


def _wait(plan: _Plan, fut: concurrent.futures.Future[None], view: Any, images: object) -> Any:
    """Show progress until the batch ends; on Ctrl-C stop it and keep what finished."""
    try:
        while True:
            try:
                fut.result(timeout=0.25)
                break
            except TimeoutError:
                if view is not None:
                    view(plan.progress)
    except KeyboardInterrupt:
        fut.cancel()
        # Winding down takes a moment (in-flight requests are closed); a second
        # Ctrl-C meanwhile must not lose the rows that finished.
        with contextlib.suppress(KeyboardInterrupt):
            plan.done.wait(15)
        with contextlib.suppress(KeyboardInterrupt):
            if view is not None:
                view(plan.progress)
        kept = plan.progress.answered + plan.progress.cached
        where = (
            f"; they are in the cache {str(plan.cache.path)!r}, so running the same call again "
            "sends only the rest"
            if plan.cache is not None
            else "; pass cache='answers.sqlite' to keep answers across runs"
        )
        raise BatchInterrupted(
            f"visionchat: batch interrupted with {kept} of {plan.progress.total} images "
            f"answered{where}. The finished rows are in the exception's .result.",
            _table(plan, images),
        ) from None
    if view is not None:
        view(plan.progress)
    return _table(plan, images)


def _make_plan(
    images: object, prompt: str, *, schema: Any, model: str | None,
    provider: str | Provider | None, api_key: str | None, base_url: str | None, api: str,
    cache: str | os.PathLike[str] | None, max_cost: float | None, concurrency: int,
    rate_limit: float | None, web_search: bool, repair: bool,
) -> _Plan:  # fmt: skip
    if not isinstance(prompt, str) or not prompt.strip():
        raise BatchError("The prompt must be a non-empty string: the question asked of each image.")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise BatchError(f"concurrency must be a whole number of at least 1, not {concurrency!r}.")
    if rate_limit is not None and not (isinstance(rate_limit, int | float) and rate_limit > 0):
        raise BatchError(
            f"rate_limit must be a positive number of requests a minute, not {rate_limit!r}."
        )
    if max_cost is not None and not (isinstance(max_cost, int | float) and max_cost >= 0):
        raise BatchError(f"max_cost must be a number of at least 0, not {max_cost!r}.")
    json_schema = _schema.to_json_schema(schema) if schema is not None else None
    inputs = collect_inputs(images)
    if not inputs:
        raise BatchError(
            "batch() got no images: the list (or Series, or folder) is empty. Nothing was sent."
        )
    prov, _key = resolve_provider(provider, api_key=api_key, base_url=base_url, api=api)
    backend = str(getattr(prov, "name", ""))
    owns = provider is None or isinstance(provider, str)
    # A provider passed in keeps whatever limiter it has (or none): it is the caller's.
    if owns and hasattr(prov, "rate_limiter") and getattr(prov, "rate_limiter", None) is None:
        per_minute = rate_limit or DEFAULT_RATE_LIMITS.get(backend)
        if per_minute:
            prov.rate_limiter = RateLimiter(per_minute)
    opened = BatchCache(cache) if cache is not None else None
    items = [_Item(name, source) for name, source in inputs]
    return _Plan(
        prompt=prompt,
        model=model or _default_model(prov),
        provider=prov,
        schema=json_schema,
        items=items,
        cache=opened,
        max_cost=max_cost,
        concurrency=concurrency if backend != "offline" else min(concurrency, 4),
        web_search=web_search,
        repair=repair,
        progress=BatchProgress(total=len(items)),
        columns=_schema.columns(json_schema) if json_schema else [],
        owns_provider=owns,
    )


def _view(progress: bool | Callable[[BatchProgress], None] | None) -> Any:
    if progress is False:
        return None
    if callable(progress):
        return progress
    if "IPython" in sys.modules:
        from ._notebook_display import in_kernel

        if in_kernel():
            from ._batch_progress import NotebookProgress

            return NotebookProgress()
    from ._batch_progress import TextProgress

    return TextProgress(sys.stderr)
