"""The one place posd's components are built: `build_components`, from the config and the
runtime, without I/O (I/O belongs in each component's `run`).

The payment stack (journal, card reader, QR scanner, ledger link, SAF sender, payment engine
and local API) is `payment_components`. Every one of them declares the same config sections:
they hold references to each other, so a reload that changes one rebuilds them all together,
and one that changes none leaves all of them running.

The order alerts (`posd.orders.OrderAlerts`, component "orders") share the stack's journal
and posd's event hub (`Runtime.events`). They are rebuilt on their own sections (terminal,
mqtt, orders, audio): the local API finds the running one by name at each request
(`orders_lookup`), so it never holds one a reload replaced.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from drivers.qr_scanner import SerialQrScanner, UsbQrScanner
from posd.api import LocalApi
from posd.config import Config, read_api_token
from posd.journal import JournalHolder
from posd.ledger import LedgerClient, LedgerTimings
from posd.orders import OrderAlerts, OrderDesk, OrdersLookup, Tuning
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
    journal: JournalHolder | None = None,
    orders: OrdersLookup | None = None,
) -> list[Component]:
    """The keyword arguments are for tests and the demo: an emulated USB backend, short
    ledger link timings and SAF retry interval, no card reader (a QR-only counter); and for
    `build_components`: the journal holder the order alerts share, and how the API finds them.
    """
    journal = journal if journal is not None else journal_holder(runtime)

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
    if qr.kind == "usb-hid":
        counter.scanner = UsbQrScanner(
            counter.on_scan,
            vendor_id=qr.usb_vendor_id,
            product_id=qr.usb_product_id,
            backend=usb_backend,
        )
    elif qr.kind == "serial" and qr.port:
        counter.scanner = SerialQrScanner(counter.on_scan, port=qr.port, baudrate=qr.baudrate)
    engine = PaymentEngine(config, journal, ledger, forwarder, counter, hub=runtime.events)
    api = LocalApi(
        engine,
        config.api.socket,
        tcp_port=config.api.tcp_port or None,
        token=read_api_token(config),
        group=api_group,
        orders=orders,
    )
    components: list[Any] = [journal, ledger, forwarder]
    if reader is not None:
        components.append(reader)
    if counter.scanner is not None:
        components.append(counter.scanner)
    components += [engine, api]
    for component in components[1:]:
        component.config_sections = STACK_SECTIONS
    # These use the journal while they stop (sign-off STAN, last payment writes).
    users = (ledger, forwarder, engine)
    return [journal.outlived_by(c) if c in users else c for c in components]


def journal_holder(runtime: Runtime) -> JournalHolder:
    """The journal holder of `runtime`, made on the first build: the journal is never restarted
    by a reload, so components rebuilt by one must get the holder that runs, not a new one
    that never opens."""
    return runtime.lasting("journal", lambda: JournalHolder(runtime.state_dir))


def orders_lookup(runtime: Runtime) -> OrdersLookup:
    """The order alerts component running now under `runtime`'s supervisor, if any."""

    def lookup() -> OrderDesk | None:
        component = runtime.supervisor.component(OrderAlerts.name)
        inner = getattr(component, "inner", component)
        return inner if isinstance(inner, OrderAlerts) else None

    return lookup


def build_components(
    config: Config,
    runtime: Runtime,
    *,
    payments: Mapping[str, Any] | None = None,
    orders: Tuning | None = None,
) -> list[Component]:
    """The one place where posd's components are registered, in start order.

    Each later part of posd (journal, local API, card reader, QR scanner, ledger client, MQTT,
    order alerts) appends its component here, built from `config` and `runtime` without doing
    any I/O (I/O belongs in its `run`). Called again on every reload that changed something;
    instances whose config sections did not change are then discarded unused.

    `payments` (payment_components' keyword arguments) and `orders` (the alerts' timings) are
    for tests and the demo.
    """
    journal = journal_holder(runtime)
    components: list[Component] = []
    components += payment_components(
        config, runtime, journal=journal, orders=orders_lookup(runtime), **(payments or {})
    )
    alerts = OrderAlerts(config, journal, runtime.events, tuning=orders)
    components.append(journal.outlived_by(alerts))
    return components
