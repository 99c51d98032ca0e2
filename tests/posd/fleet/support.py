"""A console served on a free loopback port, its background running, for the API and page tests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp

from posd.fleet.commands import CommandTransport, Operator
from posd.fleet.console import Console
from posd.fleet.model import FleetModel
from posd.fleet.web import ConsoleServer

WAIT_S = 10.0


@dataclasses.dataclass
class Served:
    console: Console
    server: ConsoleServer
    token: str | None

    @property
    def url(self) -> str:
        return self.server.url

    def session(self, *, token: str | None = None) -> aiohttp.ClientSession:
        bearer = token if token is not None else self.token
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return aiohttp.ClientSession(
            base_url=self.url, headers=headers, timeout=aiohttp.ClientTimeout(total=WAIT_S)
        )


@contextlib.asynccontextmanager
async def running_console(
    db: Path,
    *,
    token: str | None = None,
    operator: Operator | None = None,
    transport: CommandTransport | None = None,
    clock: Callable[[], float] | None = None,
    heartbeat_s: float = 15.0,
    max_streams: int = 32,
    model: FleetModel | None = None,
) -> AsyncIterator[Served]:
    extra = {} if clock is None else {"clock": clock}
    async with Console.open(
        db,
        model or FleetModel(),
        operator=operator,
        transport=transport,
        max_streams=max_streams,
        **extra,  # type: ignore[arg-type]
    ) as console:
        server = ConsoleServer(console, "127.0.0.1", 0, token=token, heartbeat_s=heartbeat_s)
        await server.start()
        try:
            yield Served(console, server, token)
        finally:
            await server.stop()


async def read_event(response: aiohttp.ClientResponse) -> tuple[str, dict[str, object]]:
    """The next named SSE event, skipping comments (connected, heartbeat)."""
    while True:
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(response.content.readline(), WAIT_S)
            assert raw, "the stream ended"
            line = raw.decode().rstrip("\n")
            if line == "":
                break
            lines.append(line)
        if all(line.startswith(":") for line in lines):
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        assert set(fields) == {"event", "data"}, lines
        return fields["event"], json.loads(fields["data"])


async def next_event(
    response: aiohttp.ClientResponse, name: str, match: Callable[[dict[str, object]], bool]
) -> dict[str, object]:
    while True:
        event, data = await read_event(response)
        if event == name and match(data):
            return data
