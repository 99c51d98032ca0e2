"""The whole daemon in-process, on simulated devices and the reference ledger, for e2e tests.

    async with running_daemon(tmp_path) as d:
        payment = await d.create(10_000, "qr")
        await d.scanner.scan(d.issuer.valid(GOOD_QR_ACCOUNT))
        done = await d.wait_final(payment["payment_id"])

Everything is real: posd's Daemon and supervisor run `build_components` (journal, ledger
link, SAF sender, serial QR scanner on a pseudo-terminal, payment engine, local API on its
Unix socket, the order alerts, and monitoring where a test enables mqtt); the reference
ledger listens on a loopback port (mutual TLS with `tls=True`).
Timings that would make tests slow (ledger reconnect backoff, SAF retry interval) are shortened.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import ssl
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from posd.config import Config, load_config
from posd.daemon import Daemon, build_components, prepare_state_dir
from posd.ledger import LedgerTimings
from posd.orders import OrderAlerts, Tuning
from posd.payments import PaymentEngine
from posd.runtime import Backoff
from posd.sim import (
    LedgerSimulator,
    QrIssuer,
    SimulatedCardReader,
    SimulatedSerialScanner,
    server_ssl_context,
)
from protocols import srl_messages as srl
from tests.helpers.configs import (
    MAC_KEY_HEX,
    PLATFORM_KEY_ID,
    platform_key_pair,
    write_config,
    write_tls_files,
)

FINAL_STATES = frozenset(
    {"approved", "declined", "approved_offline", "forwarded", "cancelled", "reversed"}
)
WAIT_S = 10.0
REPO_ROOT = Path(__file__).resolve().parents[2]
FAST_LINK = LedgerTimings(backoff_initial_s=0.05, backoff_max_s=0.2, connect_timeout_s=2.0)
# The monitoring link's settings in tests (posd.mqtt.LinkSettings fields): quick reconnects.
FAST_MQTT: Mapping[str, object] = {
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.3,
    "timeout_s": 5.0,
    "stop_timeout_s": 2.0,
}


class PosClient:
    """The POS app's side of the local API, over the daemon's Unix socket."""

    def __init__(self, socket: Path) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(socket)),
            timeout=aiohttp.ClientTimeout(total=20),
        )

    async def request(
        self, method: str, path: str, body: Mapping[str, object] | None = None
    ) -> tuple[int, Any]:
        async with self.session.request(method, f"http://posd{path}", json=body) as response:
            return response.status, await response.json()

    async def create(
        self,
        amount: int,
        method: str,
        key: str | None = None,
        benefit_plus: bool = False,
    ) -> dict[str, Any]:
        status, body = await self.request(
            "POST",
            "/v1/payments",
            {
                "amount": amount,
                "method": method,
                "idempotency_key": key or uuid.uuid4().hex,
                "benefit_plus": benefit_plus,
            },
        )
        assert status == 202, body
        return dict(body)

    async def payment(self, payment_id: str) -> dict[str, Any]:
        status, body = await self.request("GET", f"/v1/payments/{payment_id}")
        assert status == 200, body
        return dict(body)

    async def wait_state(
        self, payment_id: str, states: frozenset[str] | set[str], timeout_s: float = WAIT_S
    ) -> dict[str, Any]:
        """The payment once its state is one of `states` (polling the API)."""
        async with asyncio.timeout(timeout_s):
            while True:
                body = await self.payment(payment_id)
                if body["state"] in states:
                    return body
                await asyncio.sleep(0.02)

    async def wait_final(self, payment_id: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
        return await self.wait_state(payment_id, FINAL_STATES | {"reversing"}, timeout_s)

    async def wait_orders(self, predicate: Any, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """`GET /v1/orders` once `predicate` holds (polling the API)."""
        body: Any = None
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    status, body = await self.request("GET", "/v1/orders")
                    if status == 200 and predicate(body):
                        return dict(body)
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"GET /v1/orders never matched; last: {body}") from None

    async def wait_reader_and_ledger(self) -> None:
        """Until the status shows the card reader ready and the ledger link up."""
        await self.wait_status(
            lambda s: (
                s["devices"]["card_reader"]["state"] == "ready" and s["ledger"]["link"] == "up"
            ),
            timeout_s=20,
        )

    async def wait_status(self, predicate: Any, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """The status once `predicate` holds; waits for the API socket to answer too."""
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    status, body = await self.request("GET", "/v1/status")
                except aiohttp.ClientConnectionError:
                    status, body = 0, None
                if status == 200 and predicate(body):
                    return dict(body)
                await asyncio.sleep(0.02)


class RunningDaemon(PosClient):
    def __init__(
        self,
        tmp_path: Path,
        config_path: Path,
        config: Config,
        daemon: Daemon,
        ledger: LedgerSimulator,
        scanner: SimulatedSerialScanner,
        issuer: QrIssuer,
        reader: SimulatedCardReader | None,
    ) -> None:
        super().__init__(config.api.socket)
        self.tmp_path = tmp_path
        self.config_path = config_path
        self.config = config
        self.daemon = daemon
        self.ledger = ledger
        self.scanner = scanner
        self.issuer = issuer
        self.reader = reader
        self.overrides: dict[str, Mapping[str, object] | None] = {}

    @property
    def engine(self) -> PaymentEngine:
        component = getattr(self.daemon.supervisor.component("payments"), "inner", None)
        assert isinstance(component, PaymentEngine)
        return component

    @property
    def alerts(self) -> OrderAlerts:
        component = getattr(self.daemon.supervisor.component("orders"), "inner", None)
        assert isinstance(component, OrderAlerts)
        return component

    @property
    def state_dir(self) -> Path:
        return self.config.storage.state_dir


@contextlib.asynccontextmanager
async def running_daemon(
    tmp_path: Path,
    *,
    tls: bool = False,
    ledger_up: bool = True,
    expect_link: bool | None = None,
    card_reader: bool = False,
    usb_backend: Any = None,
    saf_retry_interval_s: float = 0.3,
    read_timeout_s: int = 5,
    backoff: Backoff | None = None,
    wait_ready: bool = True,
    order_tuning: Tuning | None = None,
    monitoring_link: Mapping[str, object] | None = None,
    monitoring_interval_s: float | None = None,
    **overrides: Mapping[str, object] | None,
) -> AsyncIterator[RunningDaemon]:
    """posd with the reference ledger and a serial QR scanner on a pty (or, given
    `usb_backend`, a USB HID scanner through that pyusb backend); see the module doc.
    `backoff`: the supervisor's restart delays, for tests that make a component crash.
    `wait_ready` False: yield once the API socket answers, whatever the status says.
    `order_tuning`: the order alerts' timings (they run in every posd; orders are off in the
    test config unless a test turns them on). `monitoring_link`: changes to FAST_MQTT for the
    monitoring link (with mqtt enabled); `monitoring_interval_s`: its state interval."""
    issuer = QrIssuer(key_id=PLATFORM_KEY_ID, private_key=platform_key_pair())
    scanner = SimulatedSerialScanner()
    reader = SimulatedCardReader(link=tmp_path / "posd-reader") if card_reader else None
    if reader is not None:
        await reader.start()
    ledger_section: dict[str, object] = {"tls": tls, "timeout_s": 2}
    ssl_context = None
    if tls:
        files = write_tls_files(tmp_path / "tls")
        ssl_context = server_ssl_context(
            files.server_cert_file, files.server_key_file, files.ca_file
        )
        ledger_section |= {
            "ca_file": str(files.ca_file),
            "cert_file": str(files.client_cert_file),
            "key_file": str(files.client_key_file),
            "host": "localhost",
        }
    ledger = LedgerSimulator(mac_key=bytes.fromhex(MAC_KEY_HEX), ssl_context=ssl_context)
    await ledger.start()
    ledger_section["port"] = ledger.port
    ledger_section |= dict(overrides.pop("ledger", None) or {})
    sections: dict[str, Mapping[str, object] | None] = {
        "ledger": ledger_section,
        "qr_scanner": (
            {"kind": "serial", "port": scanner.port}
            if usb_backend is None
            else {"kind": "usb-hid", "port": None}
        ),
    }
    if reader is not None:
        sections["card_reader"] = {"port": reader.port}
    sections.update(overrides)
    config_path = write_config(tmp_path, **sections)
    config = load_config(config_path)
    if not ledger_up:
        await ledger.refuse_connections(True)
    payments: dict[str, Any] = {
        "ledger_timings": FAST_LINK,
        "saf_retry_interval_s": saf_retry_interval_s,
        "read_timeout_s": read_timeout_s,
        "api_group": None,
        "card_reader": card_reader,
        "usb_backend": usb_backend,
    }
    build = functools.partial(
        build_components,
        payments=payments,
        orders=order_tuning,
        monitoring_link={**FAST_MQTT, **(monitoring_link or {})},
        monitoring_interval_s=monitoring_interval_s,
    )
    daemon = Daemon(
        config,
        config_path,
        prepare_state_dir(config.storage.state_dir),
        build=build,
        backoff=backoff,
    )
    # In-process: pytest keeps its own SIGINT handler, so Ctrl-C still stops the test run.
    serving = asyncio.create_task(daemon.serve(handle_signals=False))
    running = RunningDaemon(tmp_path, config_path, config, daemon, ledger, scanner, issuer, reader)
    # What write_config was given: a test rewrites the config from it to reload a change.
    running.overrides = dict(sections)
    try:
        await _wait_ready(
            running, serving, ledger_up if expect_link is None else expect_link, wait_ready
        )
        yield running
    finally:
        await running.session.close()
        daemon.request_stop()
        async with asyncio.timeout(10):
            await serving
        await ledger.close()
        scanner.unplug()
        if reader is not None:
            reader.close()


async def _wait_ready(
    running: RunningDaemon, serving: asyncio.Task[int], expect_link: bool, wait_ready: bool
) -> None:
    async with asyncio.timeout(WAIT_S):
        while not running.config.api.socket.exists():
            if serving.done():
                raise RuntimeError(f"posd stopped while starting: exit {serving.result()}")
            await asyncio.sleep(0.02)
    if not wait_ready:
        return

    def ready(body: dict[str, Any]) -> bool:
        scanner_ok = body["devices"]["qr_scanner"]["state"] == "ready"
        reader = body["devices"]["card_reader"]["state"]
        scanner_ok = scanner_ok and reader in ("ready", "disabled")
        return scanner_ok and (body["ledger"]["link"] == "up" or not expect_link)

    await running.wait_status(ready)


def sse_lines(raw: bytes) -> list[dict[str, Any]]:
    """The JSON events of an SSE body."""
    return [
        json.loads(line[len(b"data: ") :])
        for line in raw.splitlines()
        if line.startswith(b"data: ")
    ]


@contextlib.asynccontextmanager
async def daemon_process(
    config_path: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`posd run -c CONFIG` as a child process, its log in posd-process.log beside the config;
    killed at the end if the test did not stop it. `env`: more environment variables."""
    with (config_path.parent / "posd-process.log").open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "posd",
            "run",
            "-c",
            str(config_path),
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **env} if env is not None else None,
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        async with asyncio.timeout(10):
            await process.wait()


@contextlib.asynccontextmanager
async def ledger_and_reader(
    tmp_path: Path,
) -> AsyncIterator[tuple[LedgerSimulator, SimulatedCardReader, Path]]:
    """The reference ledger and a simulated reader, and a config for `posd run` using both."""
    async with shop_peers(tmp_path, qr_scanner=False) as peers:
        yield peers.ledger, peers.reader, peers.config_path


@dataclass(frozen=True)
class ShopPeers:
    """What a shop's posd talks to, simulated, and the config for `posd run` naming them."""

    ledger: LedgerSimulator
    reader: SimulatedCardReader
    scanner: SimulatedSerialScanner | None
    issuer: QrIssuer
    config_path: Path


@contextlib.asynccontextmanager
async def shop_peers(
    directory: Path,
    *,
    qr_scanner: bool = True,
    ledger_tls: ssl.SSLContext | None = None,
    **sections: Mapping[str, object] | None,
) -> AsyncIterator[ShopPeers]:
    """The reference ledger, a simulated reader, a serial QR scanner (unless `qr_scanner` is
    False), the platform's QR issuer, and a config in `directory` naming them; `sections`
    as write_config takes them, merged over the peers' keys (`ledger={"timeout_s": 2}`).
    `ledger_tls`: the ledger's server context (its section then names the files)."""
    issuer = QrIssuer(key_id=PLATFORM_KEY_ID, private_key=platform_key_pair())
    with SimulatedSerialScanner() if qr_scanner else contextlib.nullcontext() as scanner:
        async with (
            LedgerSimulator(mac_key=bytes.fromhex(MAC_KEY_HEX), ssl_context=ledger_tls) as ledger,
            SimulatedCardReader(link=directory / "posd-reader") as reader,
        ):
            own: dict[str, Mapping[str, object] | None] = {
                "ledger": {"port": ledger.port},
                "card_reader": {"port": reader.port},
                "logging": {"level": "info"},
            }
            if scanner is not None:
                own["qr_scanner"] = {"kind": "serial", "port": scanner.port}
            for name, values in sections.items():
                mine = own.get(name)
                own[name] = None if values is None else {**(mine or {}), **values}
            config_path = write_config(directory, **own)
            yield ShopPeers(ledger, reader, scanner, issuer, config_path)


def on_reader_command(
    reader: SimulatedCardReader, kind: type[srl.Message], then: Callable[[], None] | None = None
) -> asyncio.Event:
    """An event set when the first `kind` command reaches the reader; `then` runs at that
    instant, before the reader acts on it (a kill, or `reader.go_silent` to hang it)."""
    arrived = asyncio.Event()

    def listener(msg: srl.Message) -> None:
        if isinstance(msg, kind) and not arrived.is_set():
            if then is not None:
                then()
            arrived.set()

    reader.on_command.append(listener)
    return arrived


def financial(d: RunningDaemon) -> list[str]:
    return [s.mti for s in d.ledger.seen if s.mti != "0800"]


async def pay_card(d: RunningDaemon, card: str = "seoroeum") -> dict[str, object]:
    created = await d.create(1_000, "card")
    assert d.reader is not None
    d.reader.present(card)
    return await d.wait_final(str(created["payment_id"]))
