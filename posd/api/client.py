"""A small client of the local API over its Unix socket, for `posd status`, `posd saf` and the
demo (which plays the POS app: payments, and acknowledging 배달서구 orders)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

# The host part is required in the URL but means nothing on a Unix socket.
_BASE_URL = "http://posd"


class ApiUnavailable(Exception):
    """Nothing answers on the socket: the daemon is not running (or not yet listening)."""


class ApiPermissionDenied(ApiUnavailable):
    """The socket exists but this user may not use it (mode 0660, group posd)."""


class ApiRequestError(Exception):
    """The daemon answered with an error object."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def _error_from(status: int, body: object) -> ApiRequestError:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        field = error.get("field")
        return ApiRequestError(
            status,
            str(error.get("code", "unknown")),
            str(error.get("message", "")),
            field if isinstance(field, str) else None,
        )
    return ApiRequestError(status, "unknown", "the daemon answered without an error object")


class ApiClient:
    """Use as `async with ApiClient(path) as api: ...`."""

    def __init__(self, socket_path: Path, timeout_s: float = 10.0) -> None:
        self.socket_path = socket_path
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            _BASE_URL,
            connector=aiohttp.UnixConnector(path=str(self.socket_path)),
            timeout=self._timeout,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use ApiClient as `async with ApiClient(path) as api`")
        return self._session

    def _unavailable(self, exc: aiohttp.ClientConnectionError) -> ApiUnavailable:
        cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else None
        if isinstance(cause, PermissionError):
            return ApiPermissionDenied(f"no permission to use {self.socket_path}")
        return ApiUnavailable(f"nothing answers on {self.socket_path}")

    async def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, object] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        session = self._open()
        try:
            async with session.request(method, path, json=body, params=params) as response:
                text = await response.text()
                status = response.status
        except aiohttp.ClientConnectionError as exc:
            raise self._unavailable(exc) from exc
        try:
            answer = json.loads(text)
        except ValueError:
            raise ApiRequestError(status, "unknown", "the daemon answered with no JSON") from None
        if status >= 400:
            raise _error_from(status, answer)
        return answer

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/v1/status")
        return result

    async def create_payment(
        self, amount: int, method: str, idempotency_key: str, benefit_plus: bool = False
    ) -> dict[str, Any]:
        body = {
            "amount": amount,
            "method": method,
            "idempotency_key": idempotency_key,
            "benefit_plus": benefit_plus,
        }
        result: dict[str, Any] = await self._call("POST", "/v1/payments", body)
        return result

    async def payment(self, payment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/v1/payments/{payment_id}")
        return result

    async def cancel(self, payment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", f"/v1/payments/{payment_id}/cancel")
        return result

    async def refund(
        self, payment_id: str, amount: int, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, object] = {"amount": amount}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        result: dict[str, Any] = await self._call("POST", f"/v1/payments/{payment_id}/refund", body)
        return result

    async def totals(self, date: datetime.date | None = None) -> dict[str, Any]:
        params = {"date": date.isoformat()} if date is not None else None
        result: dict[str, Any] = await self._call("GET", "/v1/totals", params=params)
        return result

    async def saf(self) -> list[dict[str, Any]]:
        result: dict[str, Any] = await self._call("GET", "/v1/saf")
        queue: list[dict[str, Any]] = result["queue"]
        return queue

    async def saf_flush(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", "/v1/saf/flush")
        return result

    async def orders(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/v1/orders")
        return result

    async def acknowledge_order(self, order_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", f"/v1/orders/{order_id}/ack")
        return result

    @contextlib.asynccontextmanager
    async def events(self) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """`async with api.events() as stream:` returns once the daemon has subscribed, so
        everything that happens after it reaches `stream`; iterate it for each event."""
        session = self._open()
        # An event stream is open for as long as the caller wants; only connecting is bounded.
        timeout = aiohttp.ClientTimeout(total=None, connect=self._timeout.total)
        try:
            async with session.get("/v1/events", timeout=timeout) as response:
                if response.status >= 400:
                    raise _error_from(response.status, json.loads(await response.text()))
                first = await asyncio.wait_for(response.content.readline(), self._timeout.total)
                if first.rstrip(b"\r\n") != b": connected":
                    raise ApiRequestError(response.status, "unknown", "not an event stream")
                yield _parse_events(response.content)
        except aiohttp.ClientConnectionError as exc:
            raise self._unavailable(exc) from exc


async def _parse_events(content: aiohttp.StreamReader) -> AsyncIterator[dict[str, Any]]:
    data: list[str] = []
    async for raw in content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line == "" and data:
            event: dict[str, Any] = json.loads("\n".join(data))
            yield event
            data = []
