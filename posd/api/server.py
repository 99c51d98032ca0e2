"""The local API's listeners: aiohttp on a Unix socket (mode 0660, group posd) and, with a
bearer token, on loopback TCP; the routes are routes.py's, the connections' cap and timeouts
connections.py's.

A socket path left by a posd that crashed is taken over; one another posd still answers on is
refused (ApiStartError), never stolen. A TCP port that is taken does not stop the Unix socket:
it is logged, shown in the status (`api.tcp`) and tried again every TCP_RETRY_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import resource
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from posd.api.connections import REQUEST_TIMEOUT_S, BoundedSite, Connections, connection_cap
from posd.api.routes import HEARTBEAT_S, StateSource, StreamSlots, build_app
from posd.config import Config, read_api_token
from posd.logs import register_secret
from posd.orders import OrdersLookup
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
# A TCP port another program holds is tried again this often.
TCP_RETRY_S: Final = 30.0


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
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as exc:
        raise ApiStartError(
            f"cannot create {path.parent}, the directory of api.socket {path}: "
            f"{exc.strerror}; create it writable by the posd user (the unit's "
            "RuntimeDirectory=posd does) or change api.socket"
        ) from None
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
    except OSError as exc:
        sock.close()
        raise ApiStartError(
            f"cannot create the API socket {path}: {exc.strerror}; the directory "
            f"{path.parent} must be writable by the posd user, or change api.socket"
        ) from None
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
        tcp_retry_s: float = TCP_RETRY_S,
        max_connections: int | None = None,
        orders: OrdersLookup | None = None,
    ) -> None:
        """`state`: what `GET /v1/status` answers (posd.monitoring.StateBuilder.build, whose
        `api` section is this object's `listeners`). `tcp_port` None: no TCP listener; 0 picks
        a free port (tests). TCP needs a token. `max_connections` None: the cap follows the
        open-files limit (connections.py). `orders` finds the order alerts (`/v1/orders`)."""
        if tcp_port is not None and not token:
            raise ValueError("the TCP API needs a bearer token: set api.token_file")
        self._service = service
        self._state = state
        self.socket_path = socket_path
        self._tcp_port = tcp_port
        self._token = token
        self._heartbeat_s = heartbeat_s
        self._group = group
        self._tcp_retry_s = tcp_retry_s
        self._orders = orders
        self.tcp_bound_port: int | None = None
        self.tcp_state = "disabled" if tcp_port is None else "starting"
        self.tcp_error: str | None = None
        self._connections: Connections | None = None
        self._cap_logged = False
        self._max_connections = max_connections

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
                orders=self._orders,
            ),
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        return runner

    def listeners(self) -> dict[str, object]:
        """The API's own section of the state object (`api`, not in mqtt.md): where it listens,
        its connections."""
        connections = self._connections
        return {
            "socket": str(self.socket_path),
            "tcp": {
                "state": self.tcp_state,
                "port": self.tcp_bound_port or self._tcp_port,
                "last_error": self.tcp_error,
            },
            "connections": connections.count if connections is not None else 0,
            "max_connections": connections.cap if connections is not None else None,
        }

    async def run(self, started: Callable[[], None]) -> None:
        closing = asyncio.Event()
        slots = StreamSlots()
        soft_limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = self._max_connections or connection_cap(soft_limit)
        self._connections = connections = Connections(cap)
        if not self._cap_logged:
            # Once per process, not per restart of the component, nor per connection.
            self._cap_logged = True
            log.info(
                "local API: at most %d connections at once (open-files limit %d); one that "
                "sends no complete request within %g s is closed",
                connections.cap,
                soft_limit,
                REQUEST_TIMEOUT_S,
            )
        runners: list[web.AppRunner] = []
        socket_inode: int | None = None
        try:
            await _clear_socket_path(self.socket_path)
            unix_runner = await self._app_runner(None, closing, slots)
            runners.append(unix_runner)
            unix_socket = bind_unix_socket(self.socket_path, self._group)
            socket_inode = os.lstat(self.socket_path).st_ino
            try:
                site = BoundedSite(
                    unix_runner, unix_socket, connections, f"unix:{self.socket_path}"
                )
                await site.start()
            except BaseException:
                unix_socket.close()
                raise
            log.info("local API listening on %s", self.socket_path)
            started()
            if self._tcp_port is None:
                await asyncio.Event().wait()
            else:
                tcp_runner = await self._app_runner(self._token, closing, slots)
                runners.append(tcp_runner)
                await self._serve_tcp(tcp_runner, self._tcp_port, connections)
        finally:
            closing.set()
            for runner in reversed(runners):
                await runner.cleanup()
            self.tcp_bound_port = None
            self.tcp_state = "disabled" if self._tcp_port is None else "stopped"
            if socket_inode is not None:
                _remove_socket(self.socket_path, socket_inode)

    async def _serve_tcp(self, runner: web.AppRunner, port: int, connections: Connections) -> None:
        """Listen on 127.0.0.1:port, retrying while it is taken; the Unix socket serves on
        meanwhile (a POS app on TCP is one client; the socket serves every other)."""
        while True:
            try:
                # Loopback only, whatever else the config might say: local-api.md.
                sock = socket.create_server(("127.0.0.1", port))
            except OSError as exc:
                error = f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}"
                if error != self.tcp_error:
                    log.error(
                        "local API: %s; the Unix socket %s serves meanwhile, TCP is tried "
                        "again every %g s",
                        error,
                        self.socket_path,
                        self._tcp_retry_s,
                    )
                self.tcp_state, self.tcp_error = "error", error
                await asyncio.sleep(self._tcp_retry_s)
                continue
            try:
                await BoundedSite(runner, sock, connections, f"tcp:127.0.0.1:{port}").start()
            except BaseException:
                sock.close()
                raise
            self.tcp_bound_port = sock.getsockname()[1]
            self.tcp_state, self.tcp_error = "listening", None
            log.info("local API listening on 127.0.0.1:%d", self.tcp_bound_port)
            await asyncio.Event().wait()


def _remove_socket(path: Path, inode: int | None) -> None:
    """Remove the socket file, only if it is still `inode` when one is given: another posd
    may have replaced it since."""
    with contextlib.suppress(FileNotFoundError):
        if inode is None or os.lstat(path).st_ino == inode:
            os.unlink(path)
