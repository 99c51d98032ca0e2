"""posd.config: typed loading, every bad value reported with its line, secrets kept out."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import math
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from posd.config import (
    Config,
    ConfigError,
    ConfigFileError,
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
    platform_key_pair,
    public_key_b64,
    write_config,
    write_secret,
    write_tls_files,
)
from tests.helpers.unprivileged import run_python

OTHER_KEY = public_key_b64(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


def problems(path: Path) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [(p.line, p.key_path, p.message) for p in caught.value.problems]


def key_line(path: Path, section: str, key: str) -> int:
    """Line of `key = ` inside `[section]` of a file written by write_config."""
    current = ""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and line.split(" = ")[0].strip('"') == key:
            return number
    raise AssertionError(f"{section}.{key} not in {path}")


def header_line(path: Path, section: str) -> int:
    return path.read_text().splitlines().index(f"[{section}]") + 1


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


# --- secret files: shape checked, content never shown ---

SECRET = "5ec2e7" * 12  # distinctive hex that must never appear in a message


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (SECRET[:63], "holds 63 characters, expected exactly 64 hexadecimal characters"),
        (SECRET[:63] + "g", "holds a character that is not hexadecimal"),
        (SECRET[:64] + "\n\n", "holds 65 characters"),
        ((SECRET[:62] + "ü").encode(), "holds a character that is not hexadecimal"),
        ("", "holds 0 characters"),
    ],
)
def test_bad_mac_key_file_is_described_without_its_content(
    tmp_path: Path, content: str | bytes, fragment: str
) -> None:
    mac = tmp_path / "bad.key"
    write_secret(mac, content)
    path = write_config(tmp_path, ledger={"mac_key_file": str(mac)})
    [(_, key_path, message)] = problems(path)
    assert key_path == "ledger.mac_key_file" and fragment in message
    assert SECRET[:12] not in message


@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_mac_key_file_may_end_with_one_newline(tmp_path: Path, ending: str) -> None:
    mac = tmp_path / "ok.key"
    write_secret(mac, SECRET[:64].upper() + ending)
    config = load_config(write_config(tmp_path, ledger={"mac_key_file": str(mac)}))
    assert read_mac_key(config) == bytes.fromhex(SECRET[:64])


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "is empty"),
        (b"\n", "is empty"),
        (b"short-5ec2e7\n", "holds a token of 12 characters"),
        (b"5ec2e75ec2e7 5ec2e75ec2e7", "holds spaces or control characters"),
        ("5ec2e75ec2e7é5ec2e7".encode(), "non-ASCII"),
    ],
)
def test_bad_api_token_file_is_described_without_its_content(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    token = tmp_path / "bad.token"
    write_secret(token, content)
    path = write_config(tmp_path, api={"token_file": str(token)})
    [(_, key_path, message)] = problems(path)
    assert key_path == "api.token_file" and fragment in message
    assert "5ec2e7" not in message


def test_bad_password_file(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    for content, fragment in [(b"", "is empty"), (b"\xff5ec2e7", "is not UTF-8")]:
        write_secret(password, content)
        path = write_config(
            tmp_path, mqtt={"enabled": True, "username": "u", "password_file": str(password)}
        )
        [(_, _, message)] = problems(path)
        assert fragment in message and "5ec2e7" not in message


def test_key_material_in_the_config_is_never_echoed(tmp_path: Path) -> None:
    pasted = base64.b64encode(b"5ec2e7 private seed").decode()
    path = write_config(
        tmp_path, qr={"platform_keys": {"1": pasted}}, mqtt={"operator_keys": [pasted]}
    )
    found = problems(path)
    assert len(found) == 2
    assert all(pasted not in message for _, _, message in found)


def test_full_card_number_in_prefixes_is_not_echoed(tmp_path: Path) -> None:
    pan = "9410123456789012"
    path = write_config(tmp_path, card_reader={"accepted_prefixes": [pan]})
    [(_, _, message)] = problems(path)
    assert pan not in message and "1 to 11 digits" in message


def test_secret_readers_fail_cleanly_when_the_file_changed(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    (tmp_path / "mac.key").write_text(SECRET[:40])
    with pytest.raises(ConfigFileError) as caught:
        read_mac_key(config)
    assert "ledger.mac_key_file" in str(caught.value) and "holds 40 characters" in str(caught.value)
    assert SECRET[:12] not in str(caught.value)
    (tmp_path / "api.token").unlink()
    with pytest.raises(ConfigFileError, match=r"api\.token_file: .*does not exist"):
        read_api_token(config)


def test_nothing_secret_in_the_repr(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, api={"tcp_port": 8787}))
    text = repr(config)
    assert MAC_KEY_HEX not in text and API_TOKEN not in text


def test_secret_file_that_is_a_directory_or_not_a_regular_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, ledger={"mac_key_file": str(tmp_path)})
    [(_, _, message)] = problems(path)
    assert "is a directory, expected a file" in message
    path = write_config(tmp_path, ledger={"mac_key_file": "/dev/null"})
    [(_, _, message)] = problems(path)
    assert "is not a regular file" in message


def test_unreadable_secret_file(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    (tmp_path / "api.token").chmod(0)
    # In a child without root's override of file modes: CI runs the suite as root.
    checked = run_python("-m", "posd", "config", "check", str(path))
    assert checked.returncode == os.EX_CONFIG, checked
    line = key_line(path, "api", "token_file")
    first, *_, last = checked.stderr.splitlines()
    assert first.startswith(
        f"{path}:{line}: api.token_file: {tmp_path / 'api.token'} is not readable by this process"
    ), checked
    assert last.startswith(f"1 problem in {path}"), checked


# --- the file itself ---


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as caught:
        load_config(tmp_path / "absent.toml")
    assert str(caught.value) == (
        f"{tmp_path / 'absent.toml'}: config file not found; create one with "
        "`posd config example > FILE` and edit it, or name another file with -c FILE or POSD_CONFIG"
    )


def test_config_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="is a directory, expected the config file"):
        load_config(tmp_path)


def test_unreadable_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.chmod(0)
    checked = run_python("-m", "posd", "config", "check", str(path))
    assert checked.returncode == os.EX_NOINPUT, checked
    assert f"{path}: config file not readable by this process" in checked.stderr, checked


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ('[terminal]\nid = "T0000001"\nmerchant_id = = 1\n', 3, "Invalid value (column 15)"),
        ("[terminal]\nid = 1\nid = 2\n", 3, "Cannot overwrite a value"),
        ('[terminal]\nid = "T0000001\n', 2, "Illegal character"),
        ("[ledger]\naccepted = [1,\n", 2, "(at end of file)"),
        ("[a]\n[a]\n", 2, "Cannot declare"),
    ],
)
def test_syntax_error_is_one_problem_with_its_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("bad.toml"))
    [problem] = caught.value.problems
    assert problem.line == line
    assert str(problem).startswith(f"bad.toml:{line}: syntax error: ")
    assert fragment in problem.message and problem.message.endswith("expected valid TOML")


def test_non_utf8_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[terminal]\nid = "T000000\xe9"\n')
    [(line, _, message)] = problems(path)
    assert line == 2 and "not UTF-8 text" in message


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    data = b"\xef\xbb\xbf" + path.read_bytes()
    path.write_bytes(data)
    assert load_config(path).sha256 == hashlib.sha256(data).hexdigest()


def test_relative_paths_are_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_config(tmp_path, ledger={"mac_key_file": "mac.key"})
    assert load_config(path).ledger.mac_key_file == Path("mac.key")
    monkeypatch.chdir("/")
    assert [k for _, k, _ in problems(path)] == ["ledger.mac_key_file"]


def test_config_type_has_every_section() -> None:
    names = [f.name for f in dataclasses.fields(Config)]
    assert names == [
        "terminal", "card_reader", "qr_scanner", "qr", "ledger", "offline", "mqtt", "orders",
        "audio", "api", "storage", "logging", "source", "sha256",
    ]  # fmt: skip


# --- plain TCP to the ledger only on this machine ---


@pytest.mark.parametrize(
    "host",
    [
        "ledger.seoroeum.example",
        "192.0.2.10",
        "2001:db8::1",
        "::ffff:192.0.2.10",
        "localhost.example",
        "128.0.0.1",
    ],
)
def test_plain_tcp_ledger_off_this_machine_is_refused(tmp_path: Path, host: str) -> None:
    path = write_config(tmp_path, ledger={"host": host, "tls": False})
    [(line, key_path, message)] = problems(path)
    assert key_path == "ledger.tls" and line == key_line(path, "ledger", "tls")
    assert f"host {host} is not this machine" in message and "in clear" in message
    assert "expected tls = true" in message


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LocalHost.", "::ffff:127.0.0.1"]
)
def test_plain_tcp_ledger_on_loopback_is_accepted(tmp_path: Path, host: str) -> None:
    config = load_config(write_config(tmp_path, ledger={"host": host, "tls": False}))
    assert config.ledger.tls is False and config.ledger.host == host


def test_remote_ledger_with_tls_is_accepted(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, ledger={"host": "192.0.2.10", "tls": True}))
    assert config.ledger.tls is True


def test_mqtt_without_tls_to_a_remote_broker_is_accepted(tmp_path: Path) -> None:
    # MQTT carries no card data (mqtt.md); only the ledger link is held to TLS off this machine.
    config = load_config(write_config(tmp_path, mqtt={"enabled": True, "host": "192.0.2.20"}))
    assert config.mqtt.tls is False


# --- a secret pasted where a file path belongs is refused without being echoed ---

PASTED_HEX = "9f" * 32
PASTED_TOKEN = "c2VjcmV0LWFwaS10b2tlbi1wYXN0ZWQtaW4tcGxhY2U="
PASTED_PASSWORD = "hunter2-broker-password"
PASTED_PEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"


@pytest.mark.parametrize(
    ("section", "key", "value", "extra"),
    [
        ("ledger", "mac_key_file", PASTED_HEX, {}),
        ("api", "token_file", PASTED_TOKEN, {}),
        ("mqtt", "password_file", PASTED_PASSWORD, {"enabled": True, "username": "posd"}),
        ("ledger", "key_file", PASTED_PEM, {"tls": True}),
        ("mqtt", "key_file", PASTED_PEM, {"enabled": True, "tls": True, "cert_file": "/x.pem"}),
    ],
)
def test_secret_pasted_into_a_file_key_is_refused_unechoed(
    tmp_path: Path, section: str, key: str, value: str, extra: dict[str, object]
) -> None:
    path = write_config(tmp_path, **{section: {**extra, key: value}})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    found = {p.key_path: p.message for p in caught.value.problems}
    assert "did you paste the secret itself?" in found[f"{section}.{key}"]
    shown = str(caught.value)
    for fragment in (value, value[:12], value.strip().splitlines()[-1][:12]):
        assert fragment not in shown


def test_a_secret_looking_name_of_an_existing_file_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_secret(tmp_path / "c2VjcmV0bmFtZWRmaWxl", MAC_KEY_HEX + "\n")
    config = load_config(write_config(tmp_path, ledger={"mac_key_file": "c2VjcmV0bmFtZWRmaWxl"}))
    assert read_mac_key(config) == bytes.fromhex(MAC_KEY_HEX)


def test_a_missing_file_with_a_plain_name_is_still_named(tmp_path: Path) -> None:
    missing = tmp_path / "absent" / "mac.key"
    [(_, key_path, message)] = problems(write_config(tmp_path, ledger={"mac_key_file": missing}))
    assert key_path == "ledger.mac_key_file" and f"{missing} does not exist" in message


# --- secret files others can open are refused; the group may read them ---


def _config_naming_secret(tmp_path: Path, key_path: str) -> tuple[Path, Path]:
    """A valid config whose `key_path` names a secret file, and that file (to chmod)."""
    tls = write_tls_files(tmp_path / "tls")
    password = write_secret(tmp_path / "mqtt.password", "a-broker-password\n")
    pair = {
        "tls": True,
        "ca_file": str(tls.ca_file),
        "cert_file": str(tls.client_cert_file),
        "key_file": str(tls.client_key_file),
    }
    if key_path == "ledger.mac_key_file":
        return write_config(tmp_path), tmp_path / "mac.key"
    if key_path == "api.token_file":
        return write_config(tmp_path), tmp_path / "api.token"
    if key_path == "mqtt.password_file":
        mqtt = {"enabled": True, "username": "posd", "password_file": str(password)}
        return write_config(tmp_path, mqtt=mqtt), password
    if key_path == "ledger.key_file":
        return write_config(tmp_path, ledger=pair), tls.client_key_file
    assert key_path == "mqtt.key_file"
    return write_config(tmp_path, mqtt={"enabled": True, **pair}), tls.client_key_file


SECRET_KEYS = [
    "ledger.mac_key_file",
    "api.token_file",
    "mqtt.password_file",
    "ledger.key_file",
    "mqtt.key_file",
]


@pytest.mark.parametrize("key_path", SECRET_KEYS)
@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602, 0o601, 0o666])
def test_secret_file_open_to_others_is_refused(tmp_path: Path, key_path: str, mode: int) -> None:
    config_path, secret = _config_naming_secret(tmp_path, key_path)
    secret.chmod(mode)
    found = {k: m for _, k, m in problems(config_path)}
    assert found.keys() == {key_path}
    assert f"open to other users (mode {mode:04o})" in found[key_path]
    assert f"run `chmod 640 {secret}`" in found[key_path]


@pytest.mark.parametrize("key_path", SECRET_KEYS)
@pytest.mark.parametrize("mode", [0o640, 0o600, 0o400])
def test_secret_file_readable_by_owner_and_group_is_accepted(
    tmp_path: Path, key_path: str, mode: int
) -> None:
    config_path, secret = _config_naming_secret(tmp_path, key_path)
    secret.chmod(mode)
    load_config(config_path)


def test_public_files_may_be_world_readable(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path / "tls")
    tls.ca_file.chmod(0o644)
    tls.client_cert_file.chmod(0o644)
    load_config(
        write_config(
            tmp_path,
            ledger={
                "tls": True,
                "ca_file": str(tls.ca_file),
                "cert_file": str(tls.client_cert_file),
                "key_file": str(tls.client_key_file),
            },
        )
    )


def test_a_wrong_file_as_key_file_is_named_for_its_content_not_its_mode(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path / "tls")
    tls.ca_file.chmod(0o644)
    ledger = {
        "tls": True,
        "ca_file": str(tls.ca_file),
        "cert_file": str(tls.client_cert_file),
        "key_file": str(tls.ca_file),
    }
    [(_, key_path, message)] = problems(write_config(tmp_path, ledger=ledger))
    assert key_path == "ledger.key_file" and "holds no PEM private key" in message


def test_secret_readers_refuse_a_file_opened_to_others_after_the_check(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    (tmp_path / "mac.key").chmod(0o644)
    (tmp_path / "api.token").chmod(0o604)
    with pytest.raises(ConfigFileError, match=r"ledger\.mac_key_file: .*chmod 640"):
        read_mac_key(config)
    with pytest.raises(ConfigFileError, match=r"api\.token_file: .*chmod 640"):
        read_api_token(config)


def test_tls_keys_the_test_helpers_write_pass_the_mode_check(tmp_path: Path) -> None:
    load_config(write_config(tmp_path, ledger={"tls": True}, mqtt={"enabled": True, "tls": True}))
    for key in (tmp_path / "tls").glob("*.key"):
        assert key.stat().st_mode & 0o007 == 0


@pytest.mark.parametrize("value", [123456789012345678, 12.5e9, ["hunter2-broker-password"]])
def test_a_file_key_of_another_type_is_refused_without_its_value(
    tmp_path: Path, value: object
) -> None:
    path = write_config(tmp_path, ledger={"mac_key_file": value})
    [(_, key_path, message)] = problems(path)
    assert key_path == "ledger.mac_key_file"
    assert "(not shown here), expected a string holding a file path" in message
    assert "1234" not in message and "125" not in message and "hunter2" not in message
