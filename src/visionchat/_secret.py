"""An API key that shows up nowhere but in the request that needs it.

A plain string attribute is on view to anything that looks at an object: a
debugger's variable pane, JupyterLab's variable inspector, ``vars()``, a
pickle, a careless ``print``.  A ``Secret`` prints as ``***``, refuses to be
pickled (a pickle is a file, or a message to another process, in clear), and
keeps no clear-text copy in its own attributes either: the key is stored XORed
with a random pad, so even a tool that walks ``__slots__`` and follows every
reference finds two unrelated byte strings.  The clear key exists only for the
moment ``reveal()`` builds a request header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, NoReturn

__all__ = ["Secret"]

_MASK = "***"
# A per-process salt, so equal secrets hash alike here without the digest being
# a stable fingerprint of the key that could be looked up anywhere else.
_SALT = secrets.token_bytes(32)


def _xor(data: bytes, pad: bytes) -> bytes:
    # As integers: one operation instead of a Python loop over the bytes.
    mixed = int.from_bytes(data, "big") ^ int.from_bytes(pad, "big")
    return mixed.to_bytes(len(data), "big")


class Secret:
    """A non-empty string (an API key) that is never shown, compared in the open or pickled."""

    __slots__ = ("_digest", "_masked", "_pad")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise TypeError("A Secret needs a non-empty string (the API key).")
        data = value.encode("utf-8")
        self._pad = secrets.token_bytes(len(data))
        self._masked = _xor(data, self._pad)
        self._digest = hmac.new(_SALT, data, hashlib.sha256).digest()

    @classmethod
    def of(cls, value: str | None) -> Secret | None:
        """``None`` for a missing or empty key (a local server may need none)."""
        return cls(value) if value else None

    def reveal(self) -> str:
        """The key in clear.  Call it only where a request's headers are built."""
        return _xor(self._masked, self._pad).decode("utf-8")

    def occurs_in(self, text: str) -> bool:
        """Whether ``text`` quotes the key (a file about to be written, say)."""
        return self.reveal() in text

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the key replaced by ``***``.

        For what a server sends back: some gateways quote the key they rejected.
        """
        return text.replace(self.reveal(), _MASK)

    # -- never shown -------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return format(_MASK, spec)

    # -- compared by value, without a timing hint or a reusable fingerprint ----

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._digest, other._digest)

    def __hash__(self) -> int:
        return hash(self._digest)

    # -- never pickled; copied in-process as the immutable value it is ---------

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(
            "visionchat does not pickle an API key: the pickle would hold it in clear, "
            "in a file or on its way to another process. Create the conversation (or "
            "provider) again where it is needed, with the key from the environment "
            "(ONEMIN_API_KEY, OPENAI_API_KEY) or api_key=...; to move a conversation's "
            "content, use conv.save(path) and Conversation.load(path)."
        )

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self
