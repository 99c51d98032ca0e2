"""The API's error answers (local-api.md): `{"error": {"code", "message"}}` with a fitting
status, and `field` naming the offending input of a 400."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from functools import partial
from typing import Final

from aiohttp import web

dumps = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
# A field name quoted back to the client: a client's typo, not its whole body.
_SHOWN_KEY_CHARS: Final = 64


class ApiError(Exception):
    """An HTTP error answer raised inside a handler; `close` ends the connection after it."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        *,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.close = close


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The error shape of local-api.md; 400s also carry `field`, the offending input."""
    error: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return web.json_response({"error": error}, status=status, headers=headers, dumps=dumps)


def shown_key(key: str) -> str:
    """A client's JSON key as it can be quoted back in UTF-8 JSON and a log line: lone
    surrogates (which no UTF-8 text holds) and control or format characters escaped as
    \\uXXXX, and cut short past a few dozen characters."""
    out: list[str] = []
    for ch in key[:_SHOWN_KEY_CHARS]:
        if unicodedata.category(ch) in ("Cs", "Cc", "Cf") or ch == "\\":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    if len(key) > _SHOWN_KEY_CHARS:
        out.append("…")
    return "".join(out)


def invalid(field: str, message: str) -> ApiError:
    shown = shown_key(field)
    return ApiError(400, "invalid_request", f"{shown}: {message}", shown)
