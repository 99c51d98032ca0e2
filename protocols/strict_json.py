"""JSON read so that a document has one meaning: the reading of every payload posd takes in.

`json.loads` accepts two things other readers disagree on: a key given twice (which value
counts depends on the reader, so a checker and a doer could see different requests) and
NaN/Infinity (not JSON at all). `loads` refuses both; `request_object` is the body rule of
local-api.md's JSON requests (an object, only the keys the endpoint takes), shared by the
local API and the fleet console.
"""

from __future__ import annotations

import json
from typing import Final

__all__ = ["DuplicateKey", "RequestBodyError", "loads", "request_object"]

# What an API says of each refusal: local-api.md's error codes.
INVALID_JSON: Final = "invalid_json"
INVALID_REQUEST: Final = "invalid_request"


class DuplicateKey(ValueError):
    """An object gives `key` more than once."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key}: given more than once")
        self.key = key


class RequestBodyError(ValueError):
    """A request body refused: `code` is local-api.md's; `field` the offending key, if one
    is (`problem` then says what is wrong with it, and the caller quotes the key safely)."""

    def __init__(self, code: str, problem: str, field: str | None = None) -> None:
        super().__init__(problem)
        self.code = code
        self.problem = problem
        self.field = field


def _without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(key)
        result[key] = value
    return result


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def loads(document: str | bytes) -> object:
    """The JSON value of `document`. Raises UnicodeDecodeError (bytes not UTF-8),
    DuplicateKey, RecursionError (nested past the parser's stack) or ValueError (not JSON;
    json.JSONDecodeError where the parser says where)."""
    text = document.decode("utf-8") if isinstance(document, bytes) else document
    return json.loads(text, object_pairs_hook=_without_duplicates, parse_constant=_refuse_constant)


def request_object(body: bytes, allowed: frozenset[str]) -> dict[str, object]:
    """`body` as a JSON object holding only `allowed` keys, or RequestBodyError."""
    try:
        data = loads(body)
    except UnicodeDecodeError:
        raise RequestBodyError(INVALID_JSON, "the body is not UTF-8 text") from None
    except RecursionError:
        # json's parser recurses per nesting level: "[[[[…" deep enough exhausts the stack.
        raise RequestBodyError(INVALID_JSON, "the body nests too deeply to be a request") from None
    except DuplicateKey as exc:
        raise RequestBodyError(INVALID_REQUEST, "given more than once", exc.key) from None
    except ValueError:
        raise RequestBodyError(INVALID_JSON, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise RequestBodyError(INVALID_JSON, "the body must be a JSON object")
    for key in sorted(data):
        if key not in allowed:
            expected = ", ".join(sorted(allowed)) or "no fields"
            raise RequestBodyError(INVALID_REQUEST, f"unknown field (expected {expected})", key)
    return data
