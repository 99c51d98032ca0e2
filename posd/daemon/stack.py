"""The one place posd's components are built: `build_components`, from the config and the
runtime, without I/O (I/O belongs in each component's `run`).

The payment stack (journal, card reader, QR scanner, ledger link, SAF sender, payment engine,
local API and, with `mqtt.enabled`, fleet monitoring) is `payment_components`. Every one of
them declares the same config sections: they hold references to each other, so a reload that
changes one rebuilds them all together, and one that changes none leaves all of them running.
Monitoring also declares `mqtt`, which only it uses. The state builder (posd.monitoring) is
shared by the API's `GET /v1/status` and the monitoring link; the reader, scanner and ledger
link report their changes on the runtime's event hub.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

from drivers.qr_scanner import SerialQrScanner, UsbQrScanner
from posd.api import LocalApi
from posd.config import Config, read_api_token, read_mqtt_password
from posd.journal import JournalHolder
from posd.ledger import LedgerClient, LedgerTimings
from posd.logs import set_level
from posd.monitoring import (
    STATE_INTERVAL_S,
    CommandHandlers,
    DeviceReporter,
    Diagnostics,
    LedgerReporter,
    Monitoring,
    RecentProblems,
    StateBuilder,
)
from posd.mqtt import monitoring_link_settings
from posd.payments import RETRY_INTERVAL_S, Counter, PaymentEngine, SafForwarder
from posd.runtime import Component, Runtime

BuildComponents = Callable[[Config, Runtime], list[Component]]

STACK_SECTIONS = ("terminal", "card_reader", "qr_scanner", "qr", "ledger", "offline", "api")


def payment_components(
    config: Config,
    runtime: Runtime,
    *,
    usb_backend: Any = None,
    ledger_timings: LedgerTimings | None = None,
    saf_retry_interval_s: float = RETRY_INTERVAL_S,
    read_timeout_s: int | None = None,
    api_group: str | None = "posd",
    card_reader: bool = True,
    monitoring_link: Mapping[str, object] | None = None,
    monitoring_interval_s: float | None = None,
) -> list[Component]:
    """The keyword arguments are for tests and the demo: an emulated USB backend, short
    ledger link timings and SAF retry interval, no card reader (a QR-only counter), changes to
    the monitoring link's settings (posd.mqtt.LinkSettings fields: backoff, outbox size) and
    a shorter state interval."""
    journal = JournalHolder(runtime.state_dir)

    async def next_stan() -> int:
        return await (await journal.wait()).allocate_stan(time.time())

    ledger = LedgerClient.from_config(config, next_stan, timings=ledger_timings)
    forwarder = SafForwarder(
        journal,
        ledger,
        timeout_s=config.ledger.timeout_s,
        retry_interval_s=saf_retry_interval_s,
    )
    reader: Any = None
    reader_errors: tuple[type[Exception], ...] = ()
    if card_reader:
        # Imported here so that a QR-only stack does not load the serial reader driver.
        from drivers.card_reader import CardReader, ReaderUnavailable

        scanner_port = config.qr_scanner.port if config.qr_scanner.kind == "serial" else None
        reader = CardReader(
            port=config.card_reader.port,
            baudrate=config.card_reader.baudrate,
            # `auto` must never PING the serial QR scanner.
            exclude=[scanner_port] if scanner_port else [],
        )
        reader_errors = (ReaderUnavailable,)
    counter = Counter(reader, reader_errors=reader_errors)
    if read_timeout_s is not None:
        counter.read_timeout_s = read_timeout_s
    qr = config.qr_scanner
    scanner: UsbQrScanner | SerialQrScanner | None = None
    if qr.kind == "usb-hid":
        scanner = UsbQrScanner(
            counter.on_scan,
            vendor_id=qr.usb_vendor_id,
            product_id=qr.usb_product_id,
            backend=usb_backend,
        )
    elif qr.kind == "serial" and qr.port:
        scanner = SerialQrScanner(counter.on_scan, port=qr.port, baudrate=qr.baudrate)
    counter.scanner = scanner
    engine = PaymentEngine(config, journal, ledger, forwarder, counter, hub=runtime.hub)
    state = StateBuilder(runtime, engine)
    api = LocalApi(
        engine,
        config.api.socket,
        state=functools.partial(state.build, strict=True),
        tcp_port=config.api.tcp_port or None,
        token=read_api_token(config),
        group=api_group,
    )
    ledger.on_link = LedgerReporter(runtime.hub, ledger)
    if reader is not None:
        reader.on_state = DeviceReporter(runtime.hub, "card_reader", reader)
    if scanner is not None:
        scanner.on_state = DeviceReporter(runtime.hub, "qr_scanner", scanner)
    components: list[Any] = [journal, ledger, forwarder]
    if reader is not None:
        components.append(reader)
    if scanner is not None:
        components.append(scanner)
    components += [engine, api]
    for component in components[1:]:
        component.config_sections = STACK_SECTIONS
    if config.mqtt.enabled:
        monitoring = _monitoring(
            config,
            runtime,
            state,
            engine,
            reader,
            scanner,
            monitoring_link or {},
            monitoring_interval_s,
        )
        monitoring.config_sections = (*STACK_SECTIONS, "mqtt")
        components.append(monitoring)
    # These use the journal while they stop (sign-off STAN, last payment writes).
    users = (ledger, forwarder, engine)
    return [journal.outlived_by(c) if c in users else c for c in components]


def _monitoring(
    config: Config,
    runtime: Runtime,
    state: StateBuilder,
    engine: PaymentEngine,
    reader: Any,
    scanner: Any,
    link_changes: Mapping[str, object],
    interval_s: float | None,
) -> Monitoring:
    settings = monitoring_link_settings(
        config, read_mqtt_password(config), protocol=config.mqtt.protocol
    )
    settings = dataclasses.replace(settings, **link_changes)  # type: ignore[arg-type]
    problems = RecentProblems()
    diagnostics = Diagnostics(
        runtime, state, engine.saf, reader=reader, scanner=scanner, problems=problems
    )
    handlers = CommandHandlers(
        saf_flush=engine.saf_flush,
        diagnostics=diagnostics,
        set_log_level=set_level,
        # The order chime comes with the order alerts (posd.orders), not in this build.
        chime=None,
        request_reload=runtime.request_reload,
    )
    return Monitoring(
        config,
        runtime,
        state,
        settings,
        handlers,
        diagnostics=diagnostics,
        problems=problems,
        interval_s=STATE_INTERVAL_S if interval_s is None else interval_s,
    )


def build_components(config: Config, runtime: Runtime) -> list[Component]:
    """The one place where posd's components are registered, in start order.

    Each later part of posd (journal, local API, card reader, QR scanner, ledger client, MQTT,
    order alerts) appends its component here, built from `config` and `runtime` without doing
    any I/O (I/O belongs in its `run`). Called again on every reload that changed something;
    instances whose config sections did not change are then discarded unused.
    """
    components: list[Component] = []
    components += payment_components(config, runtime)
    return components
