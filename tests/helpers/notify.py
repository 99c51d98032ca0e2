"""The service manager's side of sd_notify: a datagram socket collecting posd's messages."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from pathlib import Path

WAIT_S = 10.0


class NotifyListener:
    """A bound AF_UNIX datagram socket, as systemd's notify socket; collects every message."""

    def __init__(self, tmp_path: Path, abstract: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            token = f"posd-test-{os.getpid()}-{os.urandom(6).hex()}"
            self.sock.bind(b"\0" + token.encode())
            self.name = "@" + token
        else:
            self.name = str(tmp_path / "notify.sock")
            self.sock.bind(self.name)
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    async def next(self) -> dict[str, str]:
        async with asyncio.timeout(WAIT_S):
            data = await asyncio.get_running_loop().sock_recv(self.sock, 4096)
        message = dict(line.split("=", 1) for line in data.decode().split("\n"))
        self.messages.append(message)
        return message

    async def until(self, predicate: Callable[[dict[str, str]], bool]) -> dict[str, str]:
        while True:
            message = await self.next()
            if predicate(message):
                return message

    def close(self) -> None:
        self.sock.close()

    @property
    def address(self) -> str | bytes:
        """The address to give posd's Notifier in-process."""
        return b"\0" + self.name[1:].encode() if self.name.startswith("@") else self.name
