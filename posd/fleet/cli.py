"""`posd fleet serve`: the command line of fleet-console.md, its checks, and the serving loop.

    posd fleet serve --broker HOST[:PORT] [--base-topic posd] [--listen ADDR:PORT]
        [--token-file F] [--db FILE] [--tls-ca F --tls-cert F --tls-key F]
        [--username U --password-file F] [--operator-key F]

posd/cli.py puts `add_arguments` on its `fleet serve` subparser and calls `run(args, link)`,
where `link` builds the broker link (`FleetLink`) from the checked `ServeOptions`. Exit codes
are sysexits': 64 for a refused command line (a wide --listen without --token-file), 78 for
an unusable file, 69 when the address cannot be listened on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from posd.config import is_loopback_host
from posd.fleet.calls import CallStoreError
from posd.fleet.commands import Operator
from posd.fleet.console import Console
from posd.fleet.files import (
    SecretFileError,
    load_operator_key,
    read_password,
    read_secret,
    read_token,
)
from posd.fleet.model import FleetModel
from posd.fleet.web import ConsoleServer
from posd.logs import register_secret, setup_logging

EX_USAGE: Final = 64
EX_UNAVAILABLE: Final = 69
EX_CONFIG: Final = 78
DEFAULT_LISTEN: Final = "127.0.0.1:8790"
DEFAULT_DB: Final = Path("fleet-console.db")
MQTT_PORT: Final = 1883
MQTTS_PORT: Final = 8883
MAX_BASE_TOPIC_CHARS: Final = 200


class ConsoleStartError(Exception):
    """The console refuses to start; the message says why and what to do."""

    def __init__(self, message: str, exit_code: int = EX_CONFIG) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _host(text: str) -> str:
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def broker_address(text: str) -> tuple[str, int | None]:
    """HOST[:PORT]; an IPv6 literal with a port is written [::1]:1883."""
    host, port = text, None
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[: end + 1], text[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError(f"{text!r}: expected HOST[:PORT] or [IPv6]:PORT")
        port = rest[1:] or None
    elif text.count(":") == 1:
        host, port = text.split(":")
    host = _host(host)
    if not host or any(char in host for char in "/ @") or not host.isprintable():
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST[:PORT], e.g. broker.example")
    if port is None:
        return host, None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be 1 to 65535")
    return host, int(port)


def listen_address(text: str) -> tuple[str, int]:
    """ADDR:PORT with ADDR an IP address or localhost; port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    host = _host(host)
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ADDR:PORT, e.g. {DEFAULT_LISTEN}")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: the address must be an IP address or localhost"
            ) from None
    return host, int(port)


def base_topic(text: str) -> str:
    """A topic to subscribe under: no wildcard, no empty level, not a broker's `$` topic."""
    if (
        not text
        or len(text) > MAX_BASE_TOPIC_CHARS
        or any(char in text for char in "+#")
        or text.startswith(("$", "/"))
        or text.endswith("/")
        or "//" in text
        or not text.isprintable()
    ):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a topic such as posd, no + or #")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `posd fleet serve`, exactly as fleet-console.md names them."""
    parser.add_argument(
        "--broker", required=True, type=broker_address, metavar="HOST[:PORT]",
        help=f"the broker the boxes publish to (port {MQTT_PORT}, {MQTTS_PORT} with TLS)",
    )  # fmt: skip
    parser.add_argument(
        "--base-topic", default="posd", type=base_topic, help="the boxes' mqtt.base_topic"
    )
    parser.add_argument(
        "--listen", default=DEFAULT_LISTEN, type=listen_address, metavar="ADDR:PORT",
        help=f"where the page and API listen (default {DEFAULT_LISTEN}; "
        "an address beyond loopback needs --token-file)",
    )  # fmt: skip
    parser.add_argument(
        "--token-file", type=Path, metavar="F", help="bearer token every API request must carry"
    )
    parser.add_argument(
        "--db", type=Path, default=DEFAULT_DB, metavar="FILE",
        help=f"the call list's SQLite file (default ./{DEFAULT_DB})",
    )  # fmt: skip
    parser.add_argument("--tls-ca", type=Path, metavar="F", help="the broker's CA (PEM): TLS on")
    parser.add_argument("--tls-cert", type=Path, metavar="F", help="client certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, metavar="F", help="its private key (PEM)")
    parser.add_argument("--username", metavar="U", help="broker user name")
    parser.add_argument("--password-file", type=Path, metavar="F", help="broker password file")
    parser.add_argument(
        "--operator-key", type=Path, metavar="F",
        help="Ed25519 private key signing commands (without it, commands are refused)",
    )  # fmt: skip


@dataclass(frozen=True)
class ServeOptions:
    """The checked command line, secrets read; what the broker link is built from."""

    broker_host: str
    broker_port: int
    base_topic: str
    listen_host: str
    listen_port: int
    token: str | None
    db: Path
    tls_ca: Path | None
    tls_cert: Path | None
    tls_key: Path | None
    username: str | None
    password: str | None
    operator: Operator | None

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    """Raises ConsoleStartError with the reason and the fix."""
    listen_host, listen_port = args.listen
    if not is_loopback_host(listen_host) and args.token_file is None:
        raise ConsoleStartError(
            f"--listen {listen_host}:{listen_port} is reachable from other machines: give "
            "--token-file F (a bearer token, e.g. from `openssl rand -hex 32 > F; chmod 600 F`) "
            "or listen on 127.0.0.1",
            EX_USAGE,
        )
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConsoleStartError("--tls-cert and --tls-key go together", EX_USAGE)
    if args.tls_cert is not None and args.tls_ca is None:
        raise ConsoleStartError("--tls-cert needs --tls-ca (the broker's CA): TLS", EX_USAGE)
    if args.password_file is not None and args.username is None:
        raise ConsoleStartError("--password-file needs --username", EX_USAGE)
    for name in ("tls_ca", "tls_cert"):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            raise ConsoleStartError(f"--{name.replace('_', '-')} {path} is not a readable file")
    try:
        token = read_token(args.token_file) if args.token_file is not None else None
        password = read_password(args.password_file) if args.password_file is not None else None
        if args.tls_key is not None:
            read_secret(args.tls_key, "--tls-key")
        key = load_operator_key(args.operator_key) if args.operator_key is not None else None
    except SecretFileError as exc:
        raise ConsoleStartError(str(exc)) from None
    for secret in (token, password):
        if secret is not None and len(secret) >= 6:
            register_secret(secret)
    broker_host, broker_port = args.broker
    tls = args.tls_ca is not None
    return ServeOptions(
        broker_host=broker_host,
        broker_port=broker_port or (MQTTS_PORT if tls else MQTT_PORT),
        base_topic=args.base_topic,
        listen_host=listen_host,
        listen_port=listen_port,
        token=token,
        db=args.db,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        username=args.username,
        password=password,
        operator=None if key is None else Operator(key),
    )


class FleetLink(Protocol):
    """The broker side, built by the MQTT wiring from ServeOptions.

    `run` subscribes to `payloads.subscriptions(base_topic)` (the snapshot at QoS 0), calls
    `console.feed(topic, payload, retain, time.time())` for every message, reports the link
    with `console.set_broker(up, detail)`, sets `console.transport` to send commands, and
    runs until cancelled, reconnecting as it must.
    """

    async def run(self, console: Console) -> None: ...


LinkFactory = Callable[[ServeOptions], FleetLink]


async def serve(
    options: ServeOptions,
    link: FleetLink,
    *,
    started: Callable[[ConsoleServer], None] | None = None,
) -> None:
    """Serve until cancelled: the model, the call list, the page and API, and the link."""
    model = FleetModel(options.base_topic)
    try:
        opened = Console.open(options.db, model, operator=options.operator)
        async with opened as console:
            server = ConsoleServer(
                console, options.listen_host, options.listen_port, token=options.token
            )
            try:
                await server.start()
            except OSError as exc:
                raise ConsoleStartError(
                    f"cannot listen on {options.listen_host}:{options.listen_port}: "
                    f"{exc.strerror or exc}",
                    EX_UNAVAILABLE,
                ) from None
            try:
                if started is not None:
                    started(server)
                await link.run(console)
            finally:
                await server.stop()
    except CallStoreError as exc:
        raise ConsoleStartError(f"--db: {exc}") from None


def run(args: argparse.Namespace, make_link: LinkFactory) -> int:
    """`posd fleet serve` with parsed arguments; runs until SIGINT or SIGTERM."""
    try:
        options = options_from_args(args)
    except ConsoleStartError as exc:
        print(f"posd fleet serve: {exc}", file=sys.stderr)
        return exc.exit_code
    setup_logging("info", "text")
    try:
        asyncio.run(_until_signalled(options, make_link(options)))
    except ConsoleStartError as exc:
        print(f"posd fleet serve: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


async def _until_signalled(options: ServeOptions, link: FleetLink) -> None:
    task = asyncio.current_task()
    assert task is not None
    signalled = False

    def stop() -> None:
        nonlocal signalled
        signalled = True
        task.cancel()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    try:
        await serve(options, link, started=lambda server: print(f"console at {server.url}/"))
    except asyncio.CancelledError:
        if not signalled:
            raise
    finally:
        with contextlib.suppress(ValueError):
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
