"""Structured answers: a schema in, JSON Schema to the model, checked fields out.

Users describe the answer they want the way they describe data in Python: a
dict of field -> type (``{"axes_labelled": bool, "defects": list[str]}``), a
dataclass, a TypedDict, or a JSON Schema they already have.  Everything is
turned into one JSON Schema, because that is what both kinds of backend take:
OpenAI-compatible servers enforce it (``response_format``), other models are
asked for it in the prompt.  Either way the reply is checked against the same
schema with ``jsonschema`` before its fields become columns, so a table never
holds a value the schema does not allow.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from .errors import VisionChatError

__all__ = [
    "AnswerFormatError",
    "SchemaError",
    "extract_requested_schema",
    "instruction",
    "parse_answer",
    "repair_prompt",
    "response_format",
    "to_json_schema",
]

_MARK = "Reply with only a JSON object, and no other text, that matches this JSON Schema:"
_NAMES = {
    "str": "string",
    "string": "string",
    "int": "integer",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "bool": "boolean",
    "boolean": "boolean",
}
_PY = {str: "string", int: "integer", float: "number", bool: "boolean"}


class SchemaError(VisionChatError, ValueError):
    """A schema visionchat cannot turn into JSON Schema, said before anything is sent."""


class AnswerFormatError(VisionChatError):
    """A model's answer that is not JSON matching the schema; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _looks_like_json_schema(value: Mapping[str, Any]) -> bool:
    return value.get("type") == "object" or "properties" in value or "$schema" in value


def _field(tp: Any, where: str) -> dict[str, Any]:
    """The JSON Schema of one field's type."""
    if isinstance(tp, Mapping):
        return dict(tp)
    if isinstance(tp, str):
        name = _NAMES.get(tp.strip().lower())
        if name is None:
            raise SchemaError(
                f"Field {where!r} has type {tp!r}; use a Python type (str, int, float, bool, "
                "list[str], Literal[...]) or one of 'str', 'int', 'float', 'bool'."
            )
        return {"type": name}
    if isinstance(tp, list | tuple) and tp and not isinstance(tp, str):
        return {"enum": list(tp)}
    if tp in _PY:
        return {"type": _PY[tp]}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if (dataclasses.is_dataclass(tp) and isinstance(tp, type)) or typing.is_typeddict(tp):
        return _object(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        item = args[0] if args else str
        return {"type": "array", "items": _field(item, where + "[]")}
    if origin in (typing.Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        schemas = [_field(a, where) for a in present]
        if len(present) < len(args):
            schemas.append({"type": "null"})
        return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    if tp is dict or origin is dict:
        return {"type": "object"}
    raise SchemaError(
        f"Field {where!r} has type {getattr(tp, '__name__', tp)!r}, which visionchat cannot "
        "describe to a model; use str, int, float, bool, list[...], Literal[...], an Enum, "
        "a dataclass, or a JSON Schema dict."
    )


def _object(fields: Any) -> dict[str, Any]:
    if isinstance(fields, Mapping):
        items = list(fields.items())
    else:
        hints = typing.get_type_hints(fields)
        if dataclasses.is_dataclass(fields):
            items = [(f.name, hints.get(f.name, f.type)) for f in dataclasses.fields(fields)]
        else:
            items = list(hints.items())
    if not items:
        raise SchemaError("The schema has no fields; name at least one, e.g. {'label': str}.")
    properties = {}
    for name, tp in items:
        if not isinstance(name, str) or not name:
            raise SchemaError(f"Field names must be non-empty strings, not {name!r}.")
        properties[name] = _field(tp, name)
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name, _ in items],
        "additionalProperties": False,
    }


def to_json_schema(schema: Any) -> dict[str, Any]:
    """The JSON Schema for ``schema`` (see the module docstring for what it takes)."""
    from jsonschema import exceptions, validators

    if isinstance(schema, Mapping) and _looks_like_json_schema(schema):
        out: dict[str, Any] = json.loads(json.dumps(schema))  # a plain, private copy
        try:
            validators.validator_for(out).check_schema(out)
        except exceptions.SchemaError as exc:
            raise SchemaError(f"The JSON Schema is not valid: {exc.message}.") from None
        if out.get("type") != "object" or not isinstance(out.get("properties"), dict):
            raise SchemaError(
                "The JSON Schema must describe an object with properties: each property "
                "becomes a column."
            )
        return out
    if isinstance(schema, Mapping) or (
        isinstance(schema, type)
        and (dataclasses.is_dataclass(schema) or typing.is_typeddict(schema))
    ):
        return _object(schema)
    raise SchemaError(
        f"schema must be a dict of field -> type, a dataclass, a TypedDict or a JSON Schema, "
        f"not {type(schema).__name__}."
    )


def columns(schema: Mapping[str, Any]) -> list[str]:
    """The fields of a JSON Schema from ``to_json_schema``, in order."""
    return list(schema["properties"])


def instruction(schema: Mapping[str, Any]) -> str:
    """What a prompt says to ask for JSON (for backends without a structured mode)."""
    return f"{_MARK}\n```json\n{json.dumps(schema, indent=1)}\n```"


def response_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI ``response_format`` asking for ``schema``.

    ``strict`` only where the schema meets strict mode's rules (every property
    required, no extra properties), so a user's looser JSON Schema still works.
    """
    props = schema.get("properties") or {}
    strict = schema.get("additionalProperties") is False and set(schema.get("required", [])) == set(
        props
    )
    return {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": dict(schema), "strict": strict},
    }


def extract_requested_schema(prompt: str) -> dict[str, Any] | None:
    """The schema a prompt built with ``instruction`` asks for (the demo models use it)."""
    at = prompt.find(_MARK)
    if at < 0:
        return None
    found = re.search(r"```json\n(.*?)\n```", prompt[at:], re.S)
    if not found:
        return None
    try:
        value = json.loads(found.group(1))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _json_text(text: str) -> Any:
    """The JSON value in a reply: bare, in a ```json fence, or the outermost {...}."""
    stripped = text.strip()
    candidates = [stripped]
    fence = re.search(r"```(?:json)?\s*\n(.*?)```", stripped, re.S | re.I)
    if fence:
        candidates.append(fence.group(1))
    first, last = stripped.find("{"), stripped.rfind("}")
    if 0 <= first < last:
        candidates.append(stripped[first : last + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    raise AnswerFormatError("the answer is not JSON")


def parse_answer(text: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``text``, checked against ``schema``; raises ``AnswerFormatError``."""
    from jsonschema import validators
    from jsonschema.exceptions import best_match

    value = _json_text(text)
    if not isinstance(value, dict):
        raise AnswerFormatError(f"the answer is JSON but not an object ({type(value).__name__})")
    validator = validators.validator_for(schema)(schema)
    error = best_match(validator.iter_errors(value))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path)
        raise AnswerFormatError(
            f"the answer does not match the schema: {error.message}"
            + (f" (at {where})" if where else "")
        )
    return value


def repair_prompt(prompt: str, schema: Mapping[str, Any], previous: str, reason: str) -> str:
    """The one follow-up that asks a model to mend an answer that did not parse."""
    shown = previous if len(previous) <= 4000 else previous[:4000] + "…"
    return (
        f"{prompt}\n\n{instruction(schema)}\n\nYour previous reply was:\n{shown}\n\n"
        f"It cannot be used because {reason}. Reply again with only the corrected JSON object."
    )
