"""posd.config: typed loading, every bad value reported with its line, secrets kept out."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import math
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from posd.config import (
    ConfigError,
    load_config,
    parse_config,
    read_api_token,
    read_mac_key,
    read_mqtt_password,
)
from tests.helpers.configs import (
    API_TOKEN,
    MAC_KEY_HEX,
    MERCHANT_ID,
    PLATFORM_KEY_ID,
    TERMINAL_ID,
    header_line,
    key_line,
    platform_key_pair,
    problems,
    public_key_b64,
    write_config,
    write_secret,
    write_tls_files,
)

OTHER_KEY = public_key_b64(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


def test_write_config_loads_with_the_values_it_wrote(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    config = load_config(path)

    assert config.terminal.id == TERMINAL_ID
    assert config.terminal.merchant_id == MERCHANT_ID
    assert config.ledger.host == "127.0.0.1" and config.ledger.tls is False
    assert config.qr.platform_keys == {
        PLATFORM_KEY_ID: base64.b64decode(public_key_b64(platform_key_pair()))
    }
    assert config.card_reader.accepted_prefixes == ("9410",)
    assert config.card_reader.port == str(tmp_path / "no-reader")
    assert config.api.socket == tmp_path / "api.sock"
    assert config.storage.state_dir == tmp_path / "state"
    assert config.source == path
    assert config.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_mac_key(config) == bytes.fromhex(MAC_KEY_HEX)
    assert read_api_token(config) == API_TOKEN
    assert read_mqtt_password(config) is None


def test_config_is_immutable(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.terminal.id = "T0000002"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.qr.platform_keys[2] = b"\0" * 32  # type: ignore[index]
    assert isinstance(config.card_reader.accepted_prefixes, tuple)


def test_derived_topics_and_orders_broker(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            mqtt={"enabled": True, "host": "broker.local", "port": 1884, "base_topic": "fleet/a"},
            orders={"enabled": True, "topic": "baedal/{merchant_id}/orders"},
        )
    )
    assert config.monitoring_topic == f"fleet/a/{TERMINAL_ID}"
    assert config.orders_topic == f"baedal/{MERCHANT_ID}/orders"
    assert config.orders_broker == ("broker.local", 1884)
    other = load_config(write_config(tmp_path, orders={"host": "orders.example", "port": 8883}))
    assert other.orders.host == "orders.example" and other.orders_broker == ("orders.example", 8883)
    same_port = load_config(write_config(tmp_path, orders={"host": "orders.example"}))
    assert same_port.orders_broker == ("orders.example", 1883)


def test_usb_ids_accept_hex_strings_and_integers(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            qr_scanner={"kind": "usb-hid", "usb_vendor_id": "0x05E0", "usb_product_id": 4608},
        )
    )
    assert config.qr_scanner.usb_vendor_id == 0x05E0
    assert config.qr_scanner.usb_product_id == 4608


def test_parse_config_checks_text_like_a_file(tmp_path: Path) -> None:
    text = write_config(tmp_path).read_text()
    config = parse_config(text, Path("inline.toml"))
    assert config.source == Path("inline.toml")
    assert config.sha256 == hashlib.sha256(text.encode()).hexdigest()
    with pytest.raises(ConfigError) as caught:
        parse_config(text.replace('"T0000001"', '"T1"'), Path("inline.toml"))
    assert str(caught.value).startswith("inline.toml:2: terminal.id: ")


# section, key, value, what the message must say. One bad value yields exactly one problem, on
# the key's own line.
BAD_VALUES: list[tuple[str, str, object, str]] = [
    ("terminal", "id", 12345678, "got an integer 12345678, expected a string of exactly 8"),
    ("terminal", "id", "T001", "has 4 characters, expected exactly 8 printable ASCII"),
    ("terminal", "id", "T00000é1", "non-ASCII"),
    ("terminal", "id", "T000/001", "MQTT topic separator or wildcard"),
    ("terminal", "id", " T000001", "leading or trailing spaces"),
    ("terminal", "merchant_id", "M0001", "has 5 characters, expected exactly 15"),
    ("terminal", "merchant_id", True, "got a boolean, expected"),
    (
        "terminal",
        "benefit_plus_rate_bps",
        250,
        "expected 0 (not a 혜택플러스 merchant) or 300 to 700",
    ),
    ("terminal", "benefit_plus_rate_bps", 701, "out of range"),
    ("terminal", "benefit_plus_rate_bps", -1, "out of range"),
    ("terminal", "benefit_plus_rate_bps", "300", "got a string"),
    ("terminal", "benefit_plus_rate_bps", 3.5, "got a float"),
    ("card_reader", "port", "ttyUSB0", 'expected "auto" or e.g. /dev/ttyUSB0'),
    ("card_reader", "port", 5, "got an integer"),
    ("card_reader", "baudrate", 4800, "out of range"),
    ("card_reader", "baudrate", 100000, "not a standard rate"),
    ("card_reader", "baudrate", "115200", "got a string"),
    ("card_reader", "accepted_prefixes", [], "is empty, expected at least one prefix"),
    ("card_reader", "accepted_prefixes", "9410", "got a string"),
    ("qr_scanner", "kind", "hid", 'expected one of "usb-hid", "serial", "none"'),
    ("qr_scanner", "kind", 1, "got an integer"),
    ("qr_scanner", "usb_vendor_id", "05e0", "not a USB id"),
    ("qr_scanner", "usb_vendor_id", "0x12345", "not a USB id"),
    ("qr_scanner", "usb_vendor_id", "0x_5e0", "not a USB id"),
    ("qr_scanner", "usb_vendor_id", 70000, "not a USB id"),
    ("qr_scanner", "usb_vendor_id", True, "not a USB id"),
    ("qr_scanner", "port", "scanner", "not an absolute device path"),
    ("qr_scanner", "baudrate", 1000, "out of range"),
    ("qr_scanner", "baudrate", 9601, "not a standard rate"),
    ("qr", "platform_keys", "abc", "got a string"),
    ("ledger", "host", "", "is empty, expected a host name"),
    ("ledger", "host", "ledger example", "not a valid host name"),
    ("ledger", "host", "ledger.example:8583", "the port goes in its own key"),
    ("ledger", "host", "[::1]", "has brackets"),
    ("ledger", "host", "-bad.example", "not a valid host name"),
    ("ledger", "port", 0, "expected an integer from 1 to 65535"),
    ("ledger", "port", 65536, "out of range"),
    ("ledger", "port", "8583", "got a string"),
    ("ledger", "tls", "yes", "expected true or false"),
    ("ledger", "timeout_s", 0, "expected a number of seconds above 0 and at most 120"),
    ("ledger", "timeout_s", -1.5, "out of range"),
    ("ledger", "timeout_s", 121, "out of range"),
    ("ledger", "timeout_s", math.nan, "out of range"),
    ("ledger", "timeout_s", math.inf, "out of range"),
    ("ledger", "timeout_s", "15", "got a string"),
    ("ledger", "mac_key_file", "", "is empty, expected the file holding the ledger MAC key"),
    ("ledger", "mac_key_file", "/nonexistent/mac.key", "/nonexistent/mac.key does not exist"),
    ("offline", "enabled", "true", "got a string"),
    ("offline", "max_payment", 0, "expected a whole number of won from 1"),
    ("offline", "max_payment", 10**13, "out of range"),
    ("offline", "max_total", "1", "got a string"),
    ("offline", "max_count", 0, "out of range"),
    ("offline", "max_per_account", 0, "out of range"),
    ("offline", "max_age_h", 0, "expected hours from 1"),
    ("offline", "max_age_h", 9000, "out of range"),
    ("mqtt", "enabled", "no", "expected true or false"),
    ("mqtt", "host", "bad host", "not a valid host name"),
    ("mqtt", "port", 0, "out of range"),
    ("mqtt", "base_topic", "posd/#", "MQTT wildcard"),
    ("mqtt", "base_topic", "posd/+/x", "MQTT wildcard"),
    ("mqtt", "base_topic", "/posd", "empty topic level"),
    ("mqtt", "base_topic", "posd/", "empty topic level"),
    ("mqtt", "base_topic", "a//b", "empty topic level"),
    ("mqtt", "base_topic", "$SYS/posd", "reserve"),
    ("mqtt", "base_topic", "{merchant_id}/x", "placeholders are not allowed here"),
    ("mqtt", "base_topic", "", "is empty"),
    ("mqtt", "base_topic", "x" * 300, "longer than 256 bytes"),
    ("mqtt", "operator_keys", "abc", 'got a string "abc", expected an array'),
    ("mqtt", "username", "a\nb", "control character"),
    ("mqtt", "password_file", 7, "got an integer"),
    ("mqtt", "protocol", "3.1", 'expected one of "3.1.1", "5"'),
    ("mqtt", "protocol", 5, "got an integer"),
    ("mqtt", "homeassistant_discovery", "yes", "got a string"),
    ("mqtt", "homeassistant_prefix", "home/+", "MQTT wildcard"),
    ("mqtt", "homeassistant_prefix", "", "is empty"),
    ("orders", "enabled", 1, "got an integer"),
    ("orders", "host", "bad host", "not a valid host name"),
    ("orders", "port", 70000, "expected 0 (the [mqtt] port) or a port from 1 to 65535"),
    ("orders", "topic", "baedal/{terminal_id}/orders", "only placeholder allowed is {merchant_id}"),
    ("orders", "topic", "baedal/{merchant_id/orders", "unmatched brace"),
    ("orders", "topic", "baedal/#", "MQTT wildcard"),
    ("orders", "repeat_s", 0, "above 0"),
    ("orders", "repeat_s", 4000, "at most 3600"),
    ("orders", "missed_after_s", 90000, "at most 86400"),
    ("orders", "protocol", "4", 'expected one of "", "3.1.1", "5"'),
    ("audio", "output", "speaker", 'expected one of "auto", "alsa", "pulse", "escpos"'),
    ("audio", "volume", 101, "expected an integer from 0 to 100"),
    ("audio", "volume", -1, "out of range"),
    ("audio", "volume", 50.5, "got a float"),
    ("audio", "device", 5, "got an integer"),
    ("audio", "escpos_form", "esc-p", 'expected one of "esc-paren-a", "esc-b"'),
    ("audio", "printer_port", "lp0", "not an absolute device path"),
    ("audio", "printer_baudrate", 9601, "not a standard rate"),
    ("audio", "printer_baudrate", "9600", "got a string"),
    ("api", "socket", "", "is empty, expected the path of the API's Unix socket"),
    ("api", "socket", "/" + "s" * 120, "at most 107 bytes"),
    ("api", "tcp_port", 70000, "expected 0 (no TCP) or a port"),
    ("api", "tcp_port", -1, "out of range"),
    ("api", "token_file", "/nonexistent/token", "/nonexistent/token does not exist"),
    ("storage", "state_dir", "", "is empty, expected posd's state directory"),
    ("storage", "state_dir", 1, "got an integer"),
    ("logging", "level", "verbose", 'expected one of "debug", "info", "warning", "error"'),
    ("logging", "level", "INFO", "not allowed"),
    ("logging", "format", "xml", 'expected one of "text", "json"'),
]


@pytest.mark.parametrize(
    ("section", "key", "value", "fragment"),
    BAD_VALUES,
    ids=[f"{s}.{k}={v!r:.20}" for s, k, v, _ in BAD_VALUES],
)
def test_bad_value_is_one_problem_on_its_line(
    tmp_path: Path, section: str, key: str, value: object, fragment: str
) -> None:
    path = write_config(tmp_path, **{section: {key: value}})
    [(line, key_path, message)] = problems(path)
    assert key_path == f"{section}.{key}"
    assert line == key_line(path, section, key)
    assert fragment in message


# Bad array elements and table entries are reported at the element.
BAD_ELEMENTS: list[tuple[str, str, object, str, str]] = [
    ("card_reader", "accepted_prefixes", [9410], "[0]", "got an integer"),
    ("card_reader", "accepted_prefixes", ["9410", "94a0"], "[1]", "1 to 11 digits"),
    ("card_reader", "accepted_prefixes", ["9410", "9410"], "[1]", "listed twice"),
    ("card_reader", "accepted_prefixes", [""], "[0]", "1 to 11 digits"),
    ("qr", "platform_keys", {"256": OTHER_KEY}, ".256", "from 0 to 255"),
    ("qr", "platform_keys", {"01": OTHER_KEY}, ".01", "not a key id"),
    ("qr", "platform_keys", {"one": OTHER_KEY}, ".one", "not a key id"),
    ("qr", "platform_keys", {"1": "not base64!"}, ".1", "is not valid base64"),
    ("qr", "platform_keys", {"1": base64.b64encode(b"x" * 31).decode()}, ".1", "decodes to 31"),
    ("qr", "platform_keys", {"1": 5}, ".1", "got an integer, expected a string"),
    ("qr", "platform_keys", {"1": "-----BEGIN PUBLIC KEY-----"}, ".1", "looks like PEM"),
    ("mqtt", "operator_keys", ["abc"], "[0]", "is not valid base64"),
    ("mqtt", "operator_keys", [OTHER_KEY, OTHER_KEY], "[1]", "listed twice"),
    ("mqtt", "operator_keys", [OTHER_KEY, 1], "[1]", "got an integer"),
]


@pytest.mark.parametrize(
    ("section", "key", "value", "suffix", "fragment"),
    BAD_ELEMENTS,
    ids=[f"{s}.{k}{x}" + f"={v!r:.16}" for s, k, v, x, _ in BAD_ELEMENTS],
)
def test_bad_element_is_reported_at_the_element(
    tmp_path: Path, section: str, key: str, value: object, suffix: str, fragment: str
) -> None:
    path = write_config(tmp_path, **{section: {key: value}})
    [(line, key_path, message)] = problems(path)
    assert key_path == f"{section}.{key}{suffix}"
    assert line == key_line(path, section, key)
    assert fragment in message


def test_der_public_key_gets_a_hint_to_use_the_raw_key(tmp_path: Path) -> None:
    raw = base64.b64decode(OTHER_KEY)
    spki = bytes.fromhex("302a300506032b6570032100") + raw
    path = write_config(tmp_path, qr={"platform_keys": {"1": base64.b64encode(spki).decode()}})
    [(_, _, message)] = problems(path)
    assert "is a DER SubjectPublicKeyInfo" in message and "last 32 bytes" in message


@pytest.mark.parametrize(
    ("section", "key"),
    [("terminal", "id"), ("terminal", "merchant_id"), ("ledger", "host")],
)
def test_required_key_missing_is_reported_at_its_section(
    tmp_path: Path, section: str, key: str
) -> None:
    path = write_config(tmp_path, **{section: {key: None}})
    assert problems(path) == [
        (header_line(path, section), f"{section}.{key}", "missing, this key is required")
    ]


def test_missing_sections_with_required_keys_are_reported_on_line_1(tmp_path: Path) -> None:
    path = write_config(tmp_path, terminal=None)
    assert problems(path) == [
        (1, "terminal.id", "missing, this key is required"),
        (1, "terminal.merchant_id", "missing, this key is required"),
    ]


def test_sections_with_only_defaults_may_be_left_out(tmp_path: Path) -> None:
    path = write_config(tmp_path, offline=None, orders=None, audio=None, logging=None, mqtt=None)
    config = load_config(path)
    assert config.offline.max_total == 500_000
    assert config.logging.level == "info"
    assert config.orders.enabled is True and config.mqtt.enabled is True


def test_unknown_keys_and_sections_are_errors_with_a_hint(tmp_path: Path) -> None:
    path = write_config(tmp_path, ledger={"timeout": 15}, ledgr={"host": "x"})
    found = problems(path)
    assert [(line, key) for line, key, _ in found] == [
        (key_line(path, "ledger", "timeout"), "ledger.timeout"),
        (header_line(path, "ledgr"), "ledgr"),
    ]
    assert found[0][2].startswith('unknown key, did you mean "timeout_s"? expected one of: host,')
    assert found[1][2].startswith('unknown section, did you mean "ledger"?')


@pytest.mark.parametrize("key", ["host", "address", "bind", "listen"])
def test_api_listen_address_keys_are_refused_as_non_loopback(tmp_path: Path, key: str) -> None:
    path = write_config(tmp_path, api={key: "0.0.0.0"})
    [(_, key_path, message)] = problems(path)
    assert key_path == f"api.{key}"
    assert "127.0.0.1 only" in message


def test_a_section_that_is_not_a_table(tmp_path: Path) -> None:
    text = "logging = 5\n" + write_config(tmp_path, logging=None).read_text()
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "posd.toml")
    messages = {(p.key_path, p.message) for p in caught.value.problems}
    assert ("logging", "got an integer 5, expected a table") in messages


# --- every problem at once, each on its line, whatever TOML form holds the key ---

MANY_PROBLEMS = """\
ledger.tls = false  # plain TCP
ledger.port = 0
ledger.mac_key_file = "{mac}"
ledger.host = "127.0.0.1"
[terminal]
id = "T1"
"merchant_id" = 'M00000000000001'
[qr.platform_keys]
"7" = "bad"
[card_reader]
accepted_prefixes = [
  "9410",
  # a comment with "quotes" ] and [ brackets
  "x1", "9411",
  '''y2''',
]
[mqtt]
operator_keys = ['''
multi''', "{key}",
  "z"]
base_topic = \"\"\"a
#b\"\"\"
[orders]
inline = {{ a = 1 }}
topic = 'x/#'
[audio]
volume = 200  # too loud
[surprise]
"""


def test_every_problem_is_reported_at_once_on_its_line(tmp_path: Path) -> None:
    mac = tmp_path / "mac.key"
    write_secret(mac, MAC_KEY_HEX)
    text = MANY_PROBLEMS.format(mac=mac, key=OTHER_KEY)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("many.toml"))
    assert [(p.line, p.key_path) for p in caught.value.problems] == [
        (2, "ledger.port"),
        (6, "terminal.id"),
        (9, "qr.platform_keys.7"),
        (14, "card_reader.accepted_prefixes[1]"),
        (15, "card_reader.accepted_prefixes[3]"),
        (18, "mqtt.operator_keys[0]"),
        (20, "mqtt.operator_keys[2]"),
        (21, "mqtt.base_topic"),
        (24, "orders.inline"),
        (25, "orders.topic"),
        (27, "audio.volume"),
        (28, "surprise"),
    ]
    lines = str(caught.value).splitlines()
    assert lines[0] == (
        "many.toml:2: ledger.port: 0 is out of range, expected an integer from 1 to 65535"
    )
    assert len(lines) == 12


def test_inline_table_entries_and_quoted_keys_are_placed_and_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, qr=None)
    text = path.read_text() + (
        f'[qr]\n# keys by id\nplatform_keys = {{ 2 = "{OTHER_KEY}", "a.b" = "{OTHER_KEY}" }}\n'
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("p.toml"))
    [problem] = caught.value.problems
    assert problem.key_path == 'qr.platform_keys."a.b"'
    assert problem.line == len(text.splitlines())


# --- cross-key rules ---


def test_ledger_tls_needs_ca_cert_and_key(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, ledger={"tls": True, "ca_file": "", "cert_file": "", "key_file": ""}
    )
    assert [(k, m.split(",")[0]) for _, k, m in problems(path)] == [
        ("ledger.ca_file", "is empty"),
        ("ledger.cert_file", "is empty"),
        ("ledger.key_file", "is empty"),
    ]


def test_ledger_tls_with_generated_files_loads(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, ledger={"tls": True}))
    assert config.ledger.tls is True
    assert config.ledger.ca_file == tmp_path / "tls" / "ca.pem"


def test_ledger_tls_files_must_hold_pem_that_belongs_together(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path / "tls")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    path = write_config(
        tmp_path,
        ledger={
            "tls": True,
            "ca_file": str(junk),
            "cert_file": str(tls.client_cert_file),
            "key_file": str(tls.server_key_file),
        },
    )
    found = {k: m for _, k, m in problems(path)}
    assert found.keys() == {"ledger.ca_file", "ledger.key_file"}
    assert "holds no PEM certificate" in found["ledger.ca_file"]
    assert "is not the private key of the certificate" in found["ledger.key_file"]


def test_ledger_cert_and_key_content_errors(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    tls = write_tls_files(tmp_path / "tls")
    encrypted = tmp_path / "encrypted.key"
    key = serialization.load_pem_private_key(tls.client_key_file.read_bytes(), password=None)
    write_secret(
        encrypted,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        ),
    )
    path = write_config(
        tmp_path,
        ledger={
            "tls": True,
            "ca_file": str(tls.ca_file),
            "cert_file": str(tls.client_key_file),
            "key_file": str(encrypted),
        },
    )
    found = {k: m for _, k, m in problems(path)}
    assert "holds no PEM certificate" in found["ledger.cert_file"]
    assert "is encrypted, expected an unencrypted PEM private key" in found["ledger.key_file"]
    path = write_config(
        tmp_path,
        ledger={
            "tls": True,
            "ca_file": str(tls.ca_file),
            "cert_file": str(tls.client_cert_file),
            "key_file": str(tls.ca_file),
        },
    )
    [(_, key_path, message)] = problems(path)
    assert key_path == "ledger.key_file" and "holds no PEM private key" in message


def test_ledger_tls_files_are_not_needed_without_tls(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, ledger={"ca_file": "/nonexistent.pem"}))
    assert config.ledger.tls is False


@pytest.mark.parametrize("kind", ["usb-hid", "serial"])
def test_a_scanner_needs_a_platform_key(tmp_path: Path, kind: str) -> None:
    path = write_config(
        tmp_path, qr_scanner={"kind": kind, "port": "/dev/ttyS9"}, qr={"platform_keys": {}}
    )
    [(line, key_path, message)] = problems(path)
    assert key_path == "qr.platform_keys" and line == key_line(path, "qr", "platform_keys")
    assert f'qr_scanner.kind is "{kind}"' in message


def test_no_scanner_needs_no_platform_key(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, qr=None))
    assert dict(config.qr.platform_keys) == {}


def test_serial_scanner_needs_its_own_port(tmp_path: Path) -> None:
    path = write_config(tmp_path, qr_scanner={"kind": "serial"})
    [(line, key_path, message)] = problems(path)
    assert (line, key_path) == (header_line(path, "qr_scanner"), "qr_scanner.port")
    assert 'kind = "serial" needs it' in message
    path = write_config(
        tmp_path,
        qr_scanner={"kind": "serial", "port": "/dev/ttyS1"},
        card_reader={"port": "/dev/ttyS1"},
    )
    [(_, key_path, message)] = problems(path)
    assert key_path == "qr_scanner.port" and "also card_reader.port" in message
    config = load_config(
        write_config(tmp_path, qr_scanner={"kind": "serial", "port": "/dev/ttyS2"})
    )
    assert config.qr_scanner.port == "/dev/ttyS2"


def test_usb_product_id_needs_a_vendor_id(tmp_path: Path) -> None:
    path = write_config(tmp_path, qr_scanner={"usb_product_id": "0x0001"})
    [(_, key_path, message)] = problems(path)
    assert key_path == "qr_scanner.usb_product_id" and "expected both ids or neither" in message


def test_offline_limits_must_be_coherent(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        offline={
            "max_payment": 600_000,
            "max_total": 500_000,
            "max_per_account": 9,
            "max_count": 5,
        },
    )
    assert [(k, m) for _, k, m in problems(path)] == [
        (
            "offline.max_payment",
            "600000 is more than max_total (500000), expected at most max_total",
        ),
        ("offline.max_per_account", "9 is more than max_count (5), expected at most max_count"),
    ]


def test_order_times_must_be_in_order(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, orders={"repeat_s": 60, "escalate_after_s": 60, "missed_after_s": 30}
    )
    assert [k for _, k, _ in problems(path)] == ["orders.repeat_s", "orders.escalate_after_s"]
    fast = load_config(
        write_config(
            tmp_path, orders={"repeat_s": 0.05, "escalate_after_s": 0.2, "missed_after_s": 0.5}
        )
    )
    assert fast.orders.repeat_s == 0.05


def test_orders_port_without_host_is_an_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, orders={"port": 1884})
    [(_, key_path, message)] = problems(path)
    assert key_path == "orders.port" and "while host is empty" in message


def test_mqtt_tls_needs_a_ca_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, mqtt={"enabled": True, "tls": True, "ca_file": ""})
    [(_, key_path, message)] = problems(path)
    assert key_path == "mqtt.ca_file" and "mqtt.tls = true needs" in message


def test_mqtt_client_certificate_needs_both_files(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path / "tls")
    path = write_config(
        tmp_path,
        mqtt={
            "enabled": True,
            "tls": True,
            "ca_file": str(tls.ca_file),
            "cert_file": str(tls.client_cert_file),
        },
    )
    [(_, key_path, message)] = problems(path)
    assert key_path == "mqtt.key_file" and "needs both cert_file and key_file" in message
    config = load_config(
        write_config(
            tmp_path,
            mqtt={
                "enabled": True,
                "tls": True,
                "ca_file": str(tls.ca_file),
                "cert_file": str(tls.client_cert_file),
                "key_file": str(tls.client_key_file),
            },
        )
    )
    assert config.mqtt.key_file == tls.client_key_file


def test_mqtt_files_without_tls_are_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, mqtt={"enabled": True, "ca_file": "/etc/ssl/ca.pem"})
    [(_, key_path, message)] = problems(path)
    assert key_path == "mqtt.ca_file" and "set while tls = false" in message


def test_mqtt_password_needs_username_and_a_readable_file(tmp_path: Path) -> None:
    password = tmp_path / "mqtt.password"
    write_secret(password, "hunter2-secret\n")
    path = write_config(tmp_path, mqtt={"enabled": True, "password_file": str(password)})
    [(_, key_path, message)] = problems(path)
    assert key_path == "mqtt.password_file" and "without a username" in message
    config = load_config(
        write_config(
            tmp_path,
            mqtt={"enabled": True, "username": "posd", "password_file": str(password)},
        )
    )
    assert read_mqtt_password(config) == "hunter2-secret"
    assert config.mqtt.username == "posd"


def test_mqtt_files_are_checked_when_only_orders_use_the_broker(tmp_path: Path) -> None:
    mqtt = {"enabled": False, "username": "posd", "password_file": "/nonexistent/pw"}
    path = write_config(tmp_path, mqtt=mqtt, orders={"enabled": True})
    [(_, key_path, _)] = problems(path)
    assert key_path == "mqtt.password_file"
    unused = write_config(tmp_path, mqtt=mqtt, orders={"enabled": False})
    assert load_config(unused).mqtt.password_file == Path("/nonexistent/pw")


def test_escpos_audio_needs_a_device(tmp_path: Path) -> None:
    path = write_config(tmp_path, audio={"output": "escpos"})
    [(_, key_path, message)] = problems(path)
    assert key_path == "audio.device" and "needs the printer port" in message


def test_printer_port_is_for_auto_only(tmp_path: Path) -> None:
    path = write_config(tmp_path, audio={"output": "alsa", "printer_port": "/dev/usb/lp0"})
    [(_, key_path, message)] = problems(path)
    assert key_path == "audio.printer_port" and 'while output = "alsa"' in message
    config = load_config(
        write_config(
            tmp_path,
            audio={"output": "auto", "printer_port": "/dev/ttyS1", "escpos_form": "esc-b"},
        )
    )
    assert (config.audio.printer_port, config.audio.escpos_form) == ("/dev/ttyS1", "esc-b")
    assert config.audio.printer_baudrate == 9600


def test_api_tcp_needs_a_token_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, api={"tcp_port": 8787, "token_file": ""})
    [(_, key_path, message)] = problems(path)
    assert key_path == "api.token_file" and "tcp_port = 8787 needs a bearer token" in message
    config = load_config(write_config(tmp_path, api={"tcp_port": 8787}))
    assert config.api.tcp_port == 8787 and read_api_token(config) == API_TOKEN


def test_state_dir_must_be_a_directory_if_it_exists(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("")
    path = write_config(tmp_path, storage={"state_dir": str(plain)})
    [(_, key_path, message)] = problems(path)
    assert key_path == "storage.state_dir" and "is not a directory" in message
    absent = load_config(write_config(tmp_path, storage={"state_dir": str(tmp_path / "new")}))
    assert absent.storage.state_dir == tmp_path / "new"
