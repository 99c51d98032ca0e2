"""The one place posd's components are built: `build_components`, from the config and the
runtime, without I/O (I/O belongs in each component's `run`).

The payment stack (journal, card reader, QR scanner, ledger link, SAF sender, payment engine
and local API) is `payment_components`. Every one of them declares the same config sections:
they hold references to each other, so a reload that changes one rebuilds them all together,
and one that changes none leaves all of them running. The reader, scanner and ledger link
report their changes on posd's event hub (`Runtime.events`).

Two more parts are rebuilt on their own sections and hold no part of the stack: they find the
running components by name at each use (`running`), so that none ever holds an instance a
reload replaced, or one built for a reload and discarded unused:
- the order alerts (posd.orders.OrderAlerts, "orders"; terminal, mqtt, orders, audio), which
  share the journal (`Runtime.lasting`) and the hub; the API finds them (`orders_lookup`),
  their audio device reports through posd.monitoring's DeviceReporter like every device;
- with `mqtt.enabled`, fleet monitoring (posd.monitoring.Monitoring, "monitoring"; terminal,
  mqtt): the payment engine for `saf_flush` and `diagnostics`, the order alerts for
  `chime_test`.
The state object is built by one StateBuilder per process (`state_builder`, kept in
`Runtime.lasting`), for `GET /v1/status` and the MQTT state alike; each of its providers
(payments, orders, the API's listeners, the monitoring link) is looked up at each build.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from drivers.audio import AudioError
from drivers.qr_scanner import SerialQrScanner
from posd.api import LocalApi
from posd.config import Config, read_api_token, read_mqtt_password
from posd.journal import JournalHolder
from posd.ledger import LedgerClient, LedgerTimings
from posd.logs import set_level
from posd.monitoring import (
    STATE_INTERVAL_S,
    CommandFailed,
    CommandHandlers,
    DeviceReporter,
    Diagnostics,
    LedgerReporter,
    Monitoring,
    RecentProblems,
    StateBuilder,
)
from posd.mqtt import LinkState, monitoring_link_settings
from posd.orders import OrderAlerts, OrdersLookup, Tuning
from posd.payments import RETRY_INTERVAL_S, Counter, DeviceNotReady, PaymentEngine, SafForwarder
from posd.runtime import Component, Runtime
from protocols.command_payload import ReplayWindow

if TYPE_CHECKING:
    from drivers.qr_scanner import UsbQrScanner

BuildComponents = Callable[[Config, Runtime], list[Component]]
_C = TypeVar("_C")

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
        max_age_h=config.offline.max_age_h,
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
        from drivers.qr_scanner import UsbQrScanner  # loads pyusb: only for this kind

        scanner = UsbQrScanner(
            counter.on_scan,
            vendor_id=qr.usb_vendor_id,
            product_id=qr.usb_product_id,
            backend=usb_backend,
        )
    elif qr.kind == "serial" and qr.port:
        scanner = SerialQrScanner(counter.on_scan, port=qr.port, baudrate=qr.baudrate)
    counter.scanner = scanner
    engine = PaymentEngine(config, journal, ledger, forwarder, counter, hub=runtime.events)
    state = state_builder(runtime)
    api = LocalApi(
        engine,
        config.api.socket,
        state=functools.partial(state.build, strict=True),
        tcp_port=config.api.tcp_port or None,
        token=read_api_token(config),
        group=api_group,
        orders=orders,
    )
    ledger.on_link = LedgerReporter(runtime.events, ledger)
    if reader is not None:
        reader.on_state = DeviceReporter(runtime.events, "card_reader", reader)
    if scanner is not None:
        scanner.on_state = DeviceReporter(runtime.events, "qr_scanner", scanner)
    components: list[Any] = [journal, ledger, forwarder]
    if reader is not None:
        components.append(reader)
    if scanner is not None:
        components.append(scanner)
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


def running(runtime: Runtime, name: str, kind: type[_C]) -> Callable[[], _C | None]:
    """The component `name` of `kind` registered now with `runtime`'s supervisor (running,
    or restarting after a crash), if any."""

    def lookup() -> _C | None:
        component = runtime.supervisor.component(name)
        inner = getattr(component, "inner", component)
        return inner if isinstance(inner, kind) else None

    return lookup


def orders_lookup(runtime: Runtime) -> OrdersLookup:
    """The order alerts component running now under `runtime`'s supervisor, if any."""
    return running(runtime, OrderAlerts.name, OrderAlerts)


def state_builder(runtime: Runtime) -> StateBuilder:
    """The one state builder of `runtime`'s process, each of its providers found running."""
    api = running(runtime, LocalApi.name, LocalApi)
    monitoring = running(runtime, Monitoring.name, Monitoring)

    def listeners() -> Mapping[str, object] | None:
        found = api()
        return found.listeners() if found is not None else None

    def link() -> LinkState | None:
        found = monitoring()
        return found.link.state if found is not None else None

    return runtime.lasting(
        "state",
        lambda: StateBuilder(
            runtime,
            running(runtime, PaymentEngine.name, PaymentEngine),
            orders=orders_lookup(runtime),
            api=listeners,
            link=link,
        ),
    )


def monitoring_component(
    config: Config,
    runtime: Runtime,
    *,
    link_changes: Mapping[str, object] | None = None,
    interval_s: float | None = None,
) -> Monitoring:
    """Fleet monitoring on the `mqtt` link. `link_changes` (posd.mqtt.LinkSettings fields:
    backoff, outbox size) and a shorter `interval_s` are for tests and the demo."""
    settings = monitoring_link_settings(config, read_mqtt_password(config))
    settings = dataclasses.replace(settings, **(link_changes or {}))  # type: ignore[arg-type]
    engine = running(runtime, PaymentEngine.name, PaymentEngine)
    alerts = orders_lookup(runtime)
    # Kept across reloads: the last problems logged, and the command ids seen (a command
    # replayed after a reload is refused like any other).
    problems = runtime.lasting("monitoring.problems", RecentProblems)
    replay = runtime.lasting("monitoring.replay", ReplayWindow)

    def payments() -> PaymentEngine:
        found = engine()
        if found is None:
            raise DeviceNotReady("the payment engine is not running (posd is starting)")
        return found

    async def saf_queue() -> list[dict[str, object]]:
        return await payments().saf()

    async def saf_flush() -> Mapping[str, object]:
        return await payments().saf_flush()

    async def chime_test() -> Mapping[str, object]:
        found = alerts()
        if found is None:
            raise CommandFailed("the order alerts are not running (posd is starting)")
        try:
            return await found.chime_test()
        except AudioError as exc:
            raise CommandFailed(str(exc)) from None

    def reader() -> Any:
        found = engine()
        return found.counter.reader if found is not None else None

    def scanner() -> Any:
        found = engine()
        return found.counter.scanner if found is not None else None

    state = state_builder(runtime)
    diagnostics = Diagnostics(
        runtime, state, saf_queue, reader=reader, scanner=scanner, problems=problems
    )
    handlers = CommandHandlers(
        saf_flush=saf_flush,
        diagnostics=diagnostics,
        set_log_level=set_level,
        chime=chime_test,
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
        replay=replay,
        interval_s=STATE_INTERVAL_S if interval_s is None else interval_s,
    )


def build_components(
    config: Config,
    runtime: Runtime,
    *,
    payments: Mapping[str, Any] | None = None,
    orders: Tuning | None = None,
    monitoring_link: Mapping[str, object] | None = None,
    monitoring_interval_s: float | None = None,
) -> list[Component]:
    """The one place where posd's components are registered, in start order.

    Each later part of posd (journal, local API, card reader, QR scanner, ledger client, MQTT,
    order alerts) appends its component here, built from `config` and `runtime` without doing
    any I/O (I/O belongs in its `run`). Called again on every reload that changed something;
    instances whose config sections did not change are then discarded unused.

    `payments` (payment_components' keyword arguments), `orders` (the alerts' timings) and
    `monitoring_link`, `monitoring_interval_s` (monitoring_component's) are for tests and the
    demo.
    """
    journal = journal_holder(runtime)
    components: list[Component] = []
    components += payment_components(
        config, runtime, journal=journal, orders=orders_lookup(runtime), **(payments or {})
    )
    audio = DeviceReporter(runtime.events, "audio")
    alerts = OrderAlerts(config, journal, runtime.events, tuning=orders, report_audio=audio.report)
    components.append(journal.outlived_by(alerts))
    if config.mqtt.enabled:
        components.append(
            monitoring_component(
                config, runtime, link_changes=monitoring_link, interval_s=monitoring_interval_s
            )
        )
    return components
