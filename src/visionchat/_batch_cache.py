"""The answers of a batch, kept in an SQLite file so that a re-run sends only what is missing.

SQLite from the standard library: one file, safe against a process killed at
any instant (each answer is its own committed transaction, in WAL mode), and
readable by any tool.  A row is keyed by everything that decides the answer:
the image's content hash, the prompt, the model, the backend and the schema,
so a changed prompt asks again instead of returning answers to another
question.  Failed requests are not kept (a re-run tries them again); answers
that did not parse are (they were paid for, and the same question would get
the same kind of answer).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import VisionChatError

__all__ = ["BatchCache", "CacheError", "cache_key"]

_FORMAT = "visionchat-batch-cache"
_VERSION = 1


class CacheError(VisionChatError):
    """The cache file cannot be used; nothing was sent."""


def cache_key(
    image_sha256: str, prompt: str, model: str, backend: str, schema: dict[str, Any] | None
) -> str:
    canonical = json.dumps(
        [image_sha256, prompt, model, backend, schema], sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class BatchCache:
    """Answers by key; every ``put`` is committed before it returns."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        where = f"the batch cache {str(self.path)!r}"
        if self.path.is_dir():
            raise CacheError(
                f"The batch cache {str(self.path)!r} is a folder; pass a file name such as "
                "'answers.sqlite'."
            )
        if not self.path.parent.is_dir():
            raise CacheError(
                f"The folder of {where} does not exist; create it or pass another path."
            )
        try:
            self._db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process
            self._check_format(where)
            # Writing now, not after the first paid answer: a read-only file or
            # folder fails here, before anything is sent.
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, image_sha256 TEXT, "
                "prompt TEXT, model TEXT, backend TEXT, row TEXT, created REAL)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('format', ?), ('version', ?)",
                (_FORMAT, str(_VERSION)),
            )
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            text = str(exc).lower()
            if "readonly" in text or "read-only" in text or "unable to open" in text:
                raise CacheError(
                    f"Cannot write {where} ({exc}): the file or its folder is read-only. "
                    "Pass a writable path, or cache=None to run without one."
                ) from None
            if "not a database" in text:
                raise CacheError(
                    f"The file {str(self.path)!r} is not a batch cache (not even an SQLite file: "
                    f"{exc}); pass a new file name, so that this file is left as it is."
                ) from None
            raise CacheError(f"Cannot use {where}: {exc}.") from None

    def _check_format(self, where: str) -> None:
        tables = {
            r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not tables:
            return
        if "meta" not in tables or "answers" not in tables:
            raise CacheError(
                f"The file {str(self.path)!r} is an SQLite database of something else (tables: "
                f"{', '.join(sorted(tables))}), not a batch cache; pass a new file name so that "
                "it is left alone."
            )
        meta = dict(self._db.execute("SELECT name, value FROM meta"))
        if meta.get("format") != _FORMAT:
            raise CacheError(
                f"The file {str(self.path)!r} is not a visionchat batch cache; "
                "pass a new file name."
            )
        if meta.get("version") != str(_VERSION):
            raise CacheError(
                f"The batch cache {str(self.path)!r} was written by another version of "
                f"visionchat (format "
                f"{meta.get('version')}, this one reads {_VERSION}); pass a new file name."
            )

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), 500):  # SQLite caps the number of parameters
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            for key, row in self._db.execute(
                f"SELECT key, row FROM answers WHERE key IN ({marks})", part
            ):
                found[key] = json.loads(row)
        return found

    def put(self, key: str, image_sha256: str, prompt: str, model: str, backend: str,
            row: dict[str, Any]) -> None:  # fmt: skip
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, image_sha256, prompt, model, backend, json.dumps(row), time.time()),
            )
        except sqlite3.Error as exc:
            raise CacheError(
                f"Could not save an answer to the batch cache {str(self.path)!r} ({exc}); "
                "the answer is still in the result table."
            ) from None

    def close(self) -> None:
        self._close_quietly()
