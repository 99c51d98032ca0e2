"""Each config section built from its TOML table, every value checked: the problems are
collected (with their lines) and raised together by `load`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import cast, get_args

from posd.config.fields import REQUIRED, Problems, Table, show, toml_type
from posd.config.files import (
    FileAccessProblem,
    FileProblem,
    check_ca_file,
    check_cert_and_key,
    check_socket_path,
    check_state_dir,
    looks_like_pasted_secret,
    parse_api_token,
    parse_mac_key,
    parse_password,
    read_secret_file,
)
from posd.config.model import (
    ApiConfig,
    AudioConfig,
    AudioOutput,
    CardReaderConfig,
    Config,
    EscposForm,
    LedgerConfig,
    LogFormat,
    LoggingConfig,
    LogLevel,
    MqttConfig,
    MqttProtocol,
    OfflineConfig,
    OrdersConfig,
    QrConfig,
    QrScannerConfig,
    QrScannerKind,
    StorageConfig,
    TerminalConfig,
)
from posd.config.values import (
    READER_BAUDRATES,
    STANDARD_BAUDRATES,
    ans,
    baudrate,
    card_prefix,
    device_path,
    ed25519_public_key,
    hostname,
    key_id,
    reader_port,
    topic,
    unix_socket_path,
    usb_id,
)
from protocols.ledger_fields import AMOUNT_MAX

MAX_COUNT = 1_000_000
MAX_AGE_H = 24 * 366
MAX_LEDGER_TIMEOUT_S = 120.0
MAX_ORDER_DELAY_S = 86_400.0

_SECTIONS = (
    "terminal",
    "card_reader",
    "qr_scanner",
    "qr",
    "ledger",
    "offline",
    "mqtt",
    "orders",
    "audio",
    "api",
    "storage",
    "logging",
)

_API_LOOPBACK_ONLY = (
    "posd listens on 127.0.0.1 only (and its Unix socket), never on another address; "
    "remove this key"
)


def build_config(
    data: Mapping[str, object], problems: Problems, source: Path, digest: str
) -> Config:
    """The Config of a parsed file; its problems go to `problems`, raised by the caller."""
    top = Table(problems, (), data, noun="section")
    tables: dict[str, Table] = {}
    for name in _SECTIONS:
        hints = {k: _API_LOOPBACK_ONLY for k in ("host", "address", "bind", "listen")}
        tables[name] = Table(problems, (name,), top.table(name), hints if name == "api" else None)
    top.finish()

    terminal = _terminal(tables["terminal"])
    card_reader = _card_reader(tables["card_reader"])
    qr_scanner = _qr_scanner(tables["qr_scanner"])
    qr = _qr(tables["qr"])
    ledger = _ledger(tables["ledger"])
    offline = _offline(tables["offline"])
    orders = _orders(tables["orders"])
    mqtt = _mqtt(tables["mqtt"], broker_used=orders.enabled)
    audio = _audio(tables["audio"])
    api = _api(tables["api"])
    storage = _storage(tables["storage"])
    logging = _logging(tables["logging"])
    for table in tables.values():
        table.finish()

    if qr_scanner.kind != "none" and not qr.platform_keys and tables["qr"].valid("platform_keys"):
        tables["qr"].problem(
            "platform_keys",
            f'no key, but qr_scanner.kind is "{qr_scanner.kind}"; expected at least one '
            'platform public key such as { "1" = "<base64>" } (or qr_scanner.kind = "none")',
        )
    if (
        qr_scanner.kind == "serial"
        and qr_scanner.port is not None
        and qr_scanner.port == card_reader.port
    ):
        tables["qr_scanner"].problem(
            "port", "is also card_reader.port, expected the scanner's own serial port"
        )

    return Config(
        terminal=terminal,
        card_reader=card_reader,
        qr_scanner=qr_scanner,
        qr=qr,
        ledger=ledger,
        offline=offline,
        mqtt=mqtt,
        orders=orders,
        audio=audio,
        api=api,
        storage=storage,
        logging=logging,
        source=source,
        sha256=digest,
    )


def _benefit_rate(value: int) -> str | None:
    if value == 0 or 300 <= value <= 700:
        return None
    return f"{value} is out of range, expected 0 (not a 혜택플러스 merchant) or 300 to 700 (3-7 %)"


def _terminal(t: Table) -> TerminalConfig:
    return TerminalConfig(
        id=t.string(
            "id",
            REQUIRED,
            ans(8, "ans8, ISO 8583 field 41"),
            expected="a string of exactly 8 printable ASCII characters",
        ),
        merchant_id=t.string(
            "merchant_id",
            REQUIRED,
            ans(15, "ans15, ISO 8583 field 42"),
            expected="a string of exactly 15 printable ASCII characters",
        ),
        benefit_plus_rate_bps=t.integer(
            "benefit_plus_rate_bps",
            0,
            0,
            700,
            expected="0 (not a 혜택플러스 merchant) or 300 to 700 (3-7 %)",
            check=_benefit_rate,
        ),
    )


def _card_reader(t: Table) -> CardReaderConfig:
    port = t.string("port", "auto", reader_port)
    rate = t.integer("baudrate", 115200, 9600, 921600, check=baudrate(READER_BAUDRATES))
    prefixes: list[str] = []
    elements = t.array("accepted_prefixes", ["9410"])
    if not elements and t.valid("accepted_prefixes"):
        t.problem("accepted_prefixes", 'is empty, expected at least one prefix such as ["9410"]')
    for index, element in enumerate(elements):
        if not isinstance(element, str):
            t.problem(
                "accepted_prefixes",
                f'got {toml_type(element)}, expected a string of digits such as "9410"',
                sub=(index,),
            )
        elif (message := card_prefix(element)) is not None:
            t.problem("accepted_prefixes", message, sub=(index,))
        elif element in prefixes:
            t.problem(
                "accepted_prefixes", "is listed twice, expected each prefix once", sub=(index,)
            )
        else:
            prefixes.append(element)
    return CardReaderConfig(
        port=None if port == "auto" else port,
        baudrate=rate,
        accepted_prefixes=tuple(prefixes),
    )


def _usb_id(t: Table, key: str) -> int | None:
    value, message = usb_id(t.value(key, "auto"))
    if message is not None:
        t.problem(key, message)
    return value


def _qr_scanner(t: Table) -> QrScannerConfig:
    kind = cast(QrScannerKind, t.choice("kind", "usb-hid", get_args(QrScannerKind)))
    vendor = _usb_id(t, "usb_vendor_id")
    product = _usb_id(t, "usb_product_id")
    port = t.optional_string("port", device_path)
    rate = t.integer("baudrate", 9600, 1200, 921600, check=baudrate(STANDARD_BAUDRATES))
    if product is not None and vendor is None and t.valid("usb_vendor_id"):
        t.problem(
            "usb_product_id",
            'is set while usb_vendor_id is "auto", expected both ids or neither',
        )
    if kind == "serial" and port is None and t.valid("kind", "port"):
        t.problem(
            "port",
            'is empty, but kind = "serial" needs it; expected the scanner\'s device path '
            "such as /dev/posd-scanner",
        )
    return QrScannerConfig(
        kind=kind, usb_vendor_id=vendor, usb_product_id=product, port=port, baudrate=rate
    )


def _qr(t: Table) -> QrConfig:
    keys: dict[int, bytes] = {}
    for name, value in t.table("platform_keys").items():
        try:
            ident = key_id(name)
        except ValueError as exc:
            t.problem("platform_keys", str(exc), sub=(name,))
            continue
        if not isinstance(value, str):
            t.problem(
                "platform_keys",
                f"got {toml_type(value)}, expected a string: base64 of a raw 32-byte "
                "Ed25519 public key",
                sub=(name,),
            )
            continue
        try:
            keys[ident] = ed25519_public_key(value)
        except ValueError as exc:
            t.problem("platform_keys", str(exc), sub=(name,))
    return QrConfig(platform_keys=MappingProxyType(keys))


def _check_file(
    t: Table, key: str, path: Path | None, need: str, check: Callable[[Path], object] | None
) -> None:
    """Report an empty required path, or whatever `check(path)` finds wrong with the file."""
    if path is None:
        if t.valid(key):
            t.problem(key, f"is empty, {need}")
        return
    if not t.valid(key) or _pasted_secret(t, key, path):
        return
    if check is not None:
        try:
            check(path)
        except FileAccessProblem as exc:
            t.problem(key, f"{exc}; {need}")
        except FileProblem as exc:
            t.problem(key, str(exc))


def _pasted_secret(t: Table, key: str, path: Path) -> bool:
    """Report (without quoting it) a `*_file` value that is a secret pasted in place of a path.

    Config problems reach stderr, the system log and MQTT, so such a value must never be echoed.
    """
    if not key.endswith("_file") or os.path.lexists(path):
        return False
    if not looks_like_pasted_secret(str(path)):
        return False
    t.problem(
        key,
        "is not a file path — did you paste the secret itself? put it in a file (mode 0640, "
        "group posd) and name the file here (the value is not shown)",
    )
    return True


def _check_cert_pair(t: Table, cert: Path | None, key: Path | None, need: str) -> None:
    if cert is not None and _pasted_secret(t, "cert_file", cert):
        cert = None
    if key is not None and _pasted_secret(t, "key_file", key):
        key = None
    if cert is None or key is None:
        _check_file(t, "cert_file", cert, need, None)
        _check_file(t, "key_file", key, need, None)
        return
    if not t.valid("cert_file", "key_file"):
        return
    cert_problem, key_problem = check_cert_and_key(cert, key)
    if cert_problem is not None:
        t.problem("cert_file", f"{cert_problem}; {need}")
    if key_problem is not None:
        t.problem("key_file", f"{key_problem}; {need}")


def _ledger(t: Table) -> LedgerConfig:
    host = t.string("host", REQUIRED, hostname)
    port = t.integer("port", 8583, 1, 65535)
    tls = t.boolean("tls", True)
    ca_file = t.path("ca_file", "/etc/posd/ledger-ca.pem")
    cert_file = t.path("cert_file", "/etc/posd/terminal.pem")
    key_file = t.path("key_file", "/etc/posd/terminal.key")
    mac_key_file = t.path("mac_key_file", "/etc/posd/mac.key")
    timeout_s = t.seconds("timeout_s", 15.0, MAX_LEDGER_TIMEOUT_S)
    if not tls and t.valid("tls", "host") and host and not is_loopback_host(host):
        t.problem(
            "tls",
            f"is false while host {host} is not this machine: card data would cross the network "
            "in clear; expected tls = true (tls = false is only for a ledger on 127.0.0.1, ::1 "
            "or localhost, such as the simulator)",
        )
    if tls and t.valid("tls"):
        _check_file(
            t, "ca_file", ca_file, "expected the ledger CA's PEM certificate", check_ca_file
        )
        _check_cert_pair(
            t,
            cert_file,
            key_file,
            "ledger.tls = true needs this terminal's certificate and key "
            "in PEM (posd enroll makes the key and CSR)",
        )
    _check_file(
        t,
        "mac_key_file",
        mac_key_file,
        "expected the file holding the ledger MAC key as 64 hex characters",
        lambda path: parse_mac_key(path, read_secret_file(path)),
    )
    return LedgerConfig(
        host=host,
        port=port,
        tls=tls,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        mac_key_file=mac_key_file or Path(),
        timeout_s=timeout_s,
    )


def is_loopback_host(host: str) -> bool:
    """Whether `host` is this machine by its very name: 127.0.0.0/8, ::1 or localhost.

    Decided without DNS: a name that merely resolves to a loopback address today may not
    tomorrow, and only these cannot be pointed elsewhere.
    """
    if host.lower().removesuffix(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _offline(t: Table) -> OfflineConfig:
    # No limit can exceed what the ledger can be asked for: field 4 is n12 (AMOUNT_MAX).
    won = f"a whole number of won from 1 to {AMOUNT_MAX}"
    config = OfflineConfig(
        enabled=t.boolean("enabled", True),
        max_payment=t.integer("max_payment", 50_000, 1, AMOUNT_MAX, expected=won),
        max_total=t.integer("max_total", 500_000, 1, AMOUNT_MAX, expected=won),
        max_count=t.integer("max_count", 50, 1, MAX_COUNT),
        max_per_account=t.integer("max_per_account", 3, 1, MAX_COUNT),
        max_age_h=t.integer("max_age_h", 72, 1, MAX_AGE_H, expected=f"hours from 1 to {MAX_AGE_H}"),
    )
    if t.valid("max_payment", "max_total") and config.max_payment > config.max_total:
        t.problem(
            "max_payment",
            f"{config.max_payment} is more than max_total ({config.max_total}), "
            "expected at most max_total",
        )
    if t.valid("max_per_account", "max_count") and config.max_per_account > config.max_count:
        t.problem(
            "max_per_account",
            f"{config.max_per_account} is more than max_count ({config.max_count}), "
            "expected at most max_count",
        )
    return config


def _operator_keys(t: Table) -> tuple[bytes, ...]:
    keys: list[bytes] = []
    for index, element in enumerate(t.array("operator_keys", [])):
        if not isinstance(element, str):
            t.problem(
                "operator_keys",
                f"got {toml_type(element)}, expected a string: base64 of a raw 32-byte "
                "Ed25519 public key",
                sub=(index,),
            )
            continue
        try:
            key = ed25519_public_key(element)
        except ValueError as exc:
            t.problem("operator_keys", str(exc), sub=(index,))
            continue
        if key in keys:
            t.problem("operator_keys", "is listed twice, expected each key once", sub=(index,))
        else:
            keys.append(key)
    return tuple(keys)


def _username(value: str) -> str | None:
    if any(char < " " for char in value):
        return "holds a control character, expected the broker user name"
    return None


def _mqtt(t: Table, *, broker_used: bool) -> MqttConfig:
    config = MqttConfig(
        enabled=t.boolean("enabled", True),
        host=t.string("host", "localhost", hostname),
        port=t.integer("port", 1883, 1, 65535),
        protocol=cast(MqttProtocol, t.choice("protocol", "5", get_args(MqttProtocol))),
        tls=t.boolean("tls", False),
        ca_file=t.path("ca_file", ""),
        cert_file=t.path("cert_file", ""),
        key_file=t.path("key_file", ""),
        username=t.optional_string("username", _username),
        password_file=t.path("password_file", ""),
        base_topic=t.string("base_topic", "posd", topic(frozenset())),
        operator_keys=_operator_keys(t),
        homeassistant_discovery=t.boolean("homeassistant_discovery", False),
        homeassistant_prefix=t.string("homeassistant_prefix", "homeassistant", topic(frozenset())),
    )
    if not (config.enabled or broker_used) or not t.valid("tls"):
        return config
    if config.tls:
        _check_file(
            t,
            "ca_file",
            config.ca_file,
            "mqtt.tls = true needs the broker CA's PEM certificate",
            check_ca_file,
        )
        if config.cert_file is not None or config.key_file is not None:
            _check_cert_pair(
                t,
                config.cert_file,
                config.key_file,
                "a client certificate needs both cert_file and key_file in PEM",
            )
    else:
        for key in ("ca_file", "cert_file", "key_file"):
            if t.present(key) and t.valid(key) and getattr(config, key) is not None:
                t.problem(key, 'is set while tls = false, expected tls = true or ""')
    if config.password_file is not None:
        if config.username is None and t.valid("username"):
            t.problem("password_file", "is set without a username, expected a username too")
        _check_file(
            t,
            "password_file",
            config.password_file,
            "expected the broker password file",
            lambda path: parse_password(path, read_secret_file(path)),
        )
    return config


def _orders(t: Table) -> OrdersConfig:
    enabled = t.boolean("enabled", True)
    host = t.optional_string("host", hostname)
    port = t.integer("port", 0, 0, 65535, expected="0 (the [mqtt] port) or a port from 1 to 65535")
    protocol = t.choice("protocol", "", ("", *get_args(MqttProtocol)))
    config = OrdersConfig(
        enabled=enabled,
        host=host,
        port=port or None,
        protocol=cast(MqttProtocol, protocol) if protocol else None,
        topic=t.string("topic", "baedal/{merchant_id}/orders", topic(frozenset({"merchant_id"}))),
        repeat_s=t.seconds("repeat_s", 15.0, 3600.0),
        escalate_after_s=t.seconds("escalate_after_s", 60.0, MAX_ORDER_DELAY_S),
        missed_after_s=t.seconds("missed_after_s", 300.0, MAX_ORDER_DELAY_S),
    )
    if host is None and port and t.valid("host"):
        t.problem("port", f"{port} is set while host is empty, expected 0 (the [mqtt] broker)")
    if t.valid("repeat_s", "escalate_after_s") and config.repeat_s >= config.escalate_after_s:
        t.problem(
            "repeat_s",
            f"{show(config.repeat_s)} is not below escalate_after_s "
            f"({show(config.escalate_after_s)}), expected repeat_s < escalate_after_s",
        )
    if (
        t.valid("escalate_after_s", "missed_after_s")
        and config.escalate_after_s >= config.missed_after_s
    ):
        t.problem(
            "escalate_after_s",
            f"{show(config.escalate_after_s)} is not below missed_after_s "
            f"({show(config.missed_after_s)}), expected escalate_after_s < missed_after_s",
        )
    return config


def _audio(t: Table) -> AudioConfig:
    output = cast(AudioOutput, t.choice("output", "auto", get_args(AudioOutput)))
    device = t.optional_string("device")
    if output == "escpos" and device is None and t.valid("output", "device"):
        t.problem(
            "device",
            'is empty, but output = "escpos" needs the printer port, expected e.g. /dev/usb/lp0',
        )
    printer_port = t.optional_string("printer_port", device_path)
    if printer_port is not None and output != "auto" and t.valid("output"):
        t.problem(
            "printer_port",
            f'is set while output = "{output}": it is the buzzer output = "auto" falls back '
            'to; expected "" (for output = "escpos" the printer port is audio.device)',
        )
    return AudioConfig(
        output=output,
        device=device,
        volume=t.integer("volume", 80, 0, 100),
        escpos_form=cast(EscposForm, t.choice("escpos_form", "esc-paren-a", get_args(EscposForm))),
        printer_port=printer_port,
        printer_baudrate=t.integer(
            "printer_baudrate", 9600, 1200, 921600, check=baudrate(STANDARD_BAUDRATES)
        ),
    )


def _api(t: Table) -> ApiConfig:
    socket = t.string("socket", "/run/posd/api.sock", unix_socket_path)
    if socket and t.valid("socket"):
        try:
            check_socket_path(Path(socket))
        except FileProblem as exc:
            t.problem("socket", str(exc))
    tcp_port = t.integer("tcp_port", 0, 0, 65535, expected="0 (no TCP) or a port from 1 to 65535")
    token_file = t.path("token_file", "")
    if tcp_port and token_file is None and t.valid("token_file"):
        t.problem(
            "token_file",
            f"is empty, but tcp_port = {tcp_port} needs a bearer token; expected a file "
            "holding the token",
        )
    elif token_file is not None:
        _check_file(
            t,
            "token_file",
            token_file,
            "expected the local API bearer token file",
            lambda path: parse_api_token(path, read_secret_file(path)),
        )
    return ApiConfig(
        socket=Path(socket or "/run/posd/api.sock"), tcp_port=tcp_port, token_file=token_file
    )


def _storage(t: Table) -> StorageConfig:
    state_dir = t.path("state_dir", "/var/lib/posd")
    _check_file(
        t,
        "state_dir",
        state_dir,
        "expected posd's state directory (journal, keys)",
        check_state_dir,
    )
    return StorageConfig(state_dir=state_dir or Path("/var/lib/posd"))


def _logging(t: Table) -> LoggingConfig:
    return LoggingConfig(
        level=cast(LogLevel, t.choice("level", "info", get_args(LogLevel))),
        format=cast(LogFormat, t.choice("format", "text", get_args(LogFormat))),
    )
