"""The local API's listeners: aiohttp on a Unix socket (mode 0660, group posd) and, with a
bearer token, on loopback TCP; the routes are routes.py's.

A socket path left by a posd that crashed is taken over; one another posd still answers on is
refused (ApiStartError), never stolen.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from posd.api.routes import HEARTBEAT_S, StateSource, StreamSlots, build_app
from posd.config import Config, read_api_token
from posd.logs import register_secret
from posd.payments import (
    PaymentService,
)

log = logging.getLogger(__package__)

SOCKET_MODE: Final = 0o660
SOCKET_GROUP: Final = "posd"
# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
_MAX_UNIX_PATH: Final = 107
# An SSE stream still open at shutdown is ended by us; this bounds waiting for the rest.
_SHUTDOWN_TIMEOUT_S: Final = 5.0


class ApiStartError(RuntimeError):
    """The API cannot listen where the configuration says (stale file, another daemon)."""


async def _socket_answers(path: Path) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 2.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _socket_file_exists(path: Path) -> bool:
    """Whether a socket file is in the way; creates the parent directory if needed."""
    if len(os.fsencode(path)) > _MAX_UNIX_PATH:
        raise ApiStartError(f"api.socket {path} is longer than {_MAX_UNIX_PATH} bytes")
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(mode):
        raise ApiStartError(f"{path} exists and is not a socket; move it away or change api.socket")
    return True


async def _clear_socket_path(path: Path) -> None:
    if not _socket_file_exists(path):
        return
    if await _socket_answers(path):
        raise ApiStartError(f"another process already serves {path}; is posd already running?")
    # Left behind by a process that died without cleaning up.
    _remove_socket(path, None)


def bind_unix_socket(path: Path, group: str | None) -> socket.socket:
    """A stream socket bound at `path` with mode 0660 (and `group`), not yet listening.

    Clients can connect only once the socket listens, and the mode is right before that, so
    there is no moment where the process umask's looser mode lets anyone in. This avoids
    changing the umask, which is process-wide (sqlite's and to_thread's workers share it).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        _restrict_socket(path, group)
    except BaseException:
        sock.close()
        raise
    return sock


def _restrict_socket(path: Path, group: str | None) -> None:
    os.chmod(path, SOCKET_MODE)
    if group is None:
        return
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return
    try:
        os.chown(path, -1, gid)
    except PermissionError:
        log.warning("cannot give %s to group %s; only its owner can use the API", path, group)


class LocalApi:
    """The API as a supervised component (`name`, `run(started)`)."""

    name = "api"
    config_sections = ("api",)

    def __init__(
        self,
        service: PaymentService,
        socket_path: Path,
        *,
        state: StateSource,
        tcp_port: int | None = None,
        token: str | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        group: str | None = SOCKET_GROUP,
    ) -> None:
        """`state`: what `GET /v1/status` answers (posd.monitoring.StateBuilder.build).
        `tcp_port` None: no TCP listener; 0 picks a free port (tests). TCP needs a token."""
        if tcp_port is not None and not token:
            raise ValueError("the TCP API needs a bearer token: set api.token_file")
        self._service = service
        self._state = state
        self.socket_path = socket_path
        self._tcp_port = tcp_port
        self._token = token
        self._heartbeat_s = heartbeat_s
        self._group = group
        self.tcp_bound_port: int | None = None

    @classmethod
    def from_config(cls, config: Config, service: PaymentService, state: StateSource) -> LocalApi:
        """The API as configured; reads the token file (ConfigFileError when unusable)."""
        token = read_api_token(config) if config.api.tcp_port else None
        if token is not None:
            register_secret(token)
        return cls(
            service,
            config.api.socket,
            state=state,
            tcp_port=config.api.tcp_port or None,
            token=token,
        )

    async def _app_runner(
        self, token: str | None, closing: asyncio.Event, slots: StreamSlots
    ) -> web.AppRunner:
        """A set-up runner of the API app for one listener; `token` None asks for none."""
        runner = web.AppRunner(
            build_app(
                self._service,
                state=self._state,
                token=token,
                closing=closing,
                heartbeat_s=self._heartbeat_s,
                stream_slots=slots,
            ),
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        return runner

    async def run(self, started: Callable[[], None]) -> None:
        closing = asyncio.Event()
        slots = StreamSlots()
        runners: list[web.AppRunner] = []
        socket_inode: int | None = None
        try:
            await _clear_socket_path(self.socket_path)
            unix_runner = await self._app_runner(None, closing, slots)
            runners.append(unix_runner)
            unix_socket = bind_unix_socket(self.socket_path, self._group)
            socket_inode = os.lstat(self.socket_path).st_ino
            try:
                await web.SockSite(unix_runner, unix_socket).start()
            except BaseException:
                unix_socket.close()
                raise
            log.info("local API listening on %s", self.socket_path)
            if self._tcp_port is not None:
                tcp_runner = await self._app_runner(self._token, closing, slots)
                runners.append(tcp_runner)
                # Loopback only, whatever else the config might say: local-api.md.
                site = web.TCPSite(tcp_runner, "127.0.0.1", self._tcp_port)
                await site.start()
                self.tcp_bound_port = site.port
                log.info("local API listening on 127.0.0.1:%d", site.port)
            started()
            await asyncio.Event().wait()
        finally:
            closing.set()
            for runner in reversed(runners):
                await runner.cleanup()
            self.tcp_bound_port = None
            if socket_inode is not None:
                _remove_socket(self.socket_path, socket_inode)


def _remove_socket(path: Path, inode: int | None) -> None:
    """Remove the socket file, only if it is still `inode` when one is given: another posd
    may have replaced it since."""
    with contextlib.suppress(FileNotFoundError):
        if inode is None or os.lstat(path).st_ino == inode:
            os.unlink(path)
