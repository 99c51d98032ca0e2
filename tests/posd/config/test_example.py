"""The shipped example config: complete, commented, the operations.md defaults, and valid."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

import pytest

from posd import config as config_module
from posd.config import Config, ConfigError, example_text, parse_config
from tests.helpers.configs import MAC_KEY_HEX, write_secret, write_tls_files

REPO = Path(__file__).resolve().parents[3]

# operations.md, "Config file": the value of every key in its listing.
OPERATIONS_DEFAULTS: dict[str, dict[str, object]] = {
    "terminal": {"id": "T0000001", "merchant_id": "M00000000000001", "benefit_plus_rate_bps": 0},
    "card_reader": {"port": None, "baudrate": 115200, "accepted_prefixes": ("9410",)},
    "qr_scanner": {
        "kind": "usb-hid",
        "usb_vendor_id": None,
        "usb_product_id": None,
        "port": None,
        "baudrate": 9600,
    },
    "ledger": {"host": "ledger.example", "port": 8583, "tls": True, "timeout_s": 15.0},
    "offline": {
        "enabled": True,
        "max_payment": 50000,
        "max_total": 500000,
        "max_count": 50,
        "max_per_account": 3,
        "max_age_h": 72,
    },
    "mqtt": {
        "enabled": True,
        "host": "localhost",
        "port": 1883,
        "tls": False,
        "ca_file": None,
        "cert_file": None,
        "key_file": None,
        "username": None,
        "password_file": None,
        "base_topic": "posd",
        "operator_keys": (),
    },
    "orders": {
        "enabled": True,
        "host": None,
        "port": None,
        "topic": "baedal/{merchant_id}/orders",
        "repeat_s": 15.0,
        "escalate_after_s": 60.0,
        "missed_after_s": 300.0,
    },
    "audio": {"output": "auto", "device": None, "volume": 80},
    "api": {"socket": Path("/run/posd/api.sock"), "tcp_port": 0, "token_file": None},
    "storage": {"state_dir": Path("/var/lib/posd")},
    "logging": {"level": "info", "format": "text"},
}

# Keys beyond operations.md's listing (README, "Configure"), with their defaults.
EXTENSION_DEFAULTS: dict[str, dict[str, object]] = {
    "mqtt": {
        "protocol": "5",
        "homeassistant_discovery": False,
        "homeassistant_prefix": "homeassistant",
    },
    "orders": {"protocol": None},
    "audio": {"escpos_form": "esc-paren-a", "printer_port": None, "printer_baudrate": 9600},
}

MISSING_FILES = {
    "ledger.ca_file": "/etc/posd/ledger-ca.pem",
    "ledger.cert_file": "/etc/posd/terminal.pem",
    "ledger.key_file": "/etc/posd/terminal.key",
    "ledger.mac_key_file": "/etc/posd/mac.key",
}


def line_of(text: str, start: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith(start))


def test_repository_copy_is_a_symlink_to_the_packaged_example() -> None:
    link = REPO / "config" / "posd.example.toml"
    assert link.is_symlink() and os.readlink(link) == "../posd/config/example.toml"
    assert link.read_text(encoding="utf-8") == example_text()


def test_example_has_every_key_of_every_section() -> None:
    data = tomllib.loads(example_text())
    expected = {f.name for f in dataclasses.fields(Config)} - {"source", "sha256"}
    assert set(data) == expected
    for name in expected:
        section_type = getattr(config_module, _class_name(name))
        assert set(data[name]) == {f.name for f in dataclasses.fields(section_type)}, name


def _class_name(section: str) -> str:
    return (
        "".join(part.title() for part in section.split("_")) + "Config"
    )  # qr_scanner: QrScannerConfig


def test_example_is_valid_except_for_the_files_it_names() -> None:
    text = example_text()
    if any(Path(p).exists() for p in MISSING_FILES.values()):
        pytest.skip("this machine has real posd files in /etc/posd")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("example.toml"))
    found = [(p.line, p.key_path) for p in caught.value.problems]
    assert found == [(line_of(text, key.split(".")[1] + " = "), key) for key in MISSING_FILES]
    for problem in caught.value.problems:
        assert f"{MISSING_FILES[problem.key_path]} does not exist" in problem.message


def test_example_with_its_files_present_holds_the_operations_defaults(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path / "tls")
    mac = tmp_path / "mac.key"
    write_secret(mac, MAC_KEY_HEX + "\n")
    text = example_text()
    for old, new in [
        ("/etc/posd/ledger-ca.pem", tls.ca_file),
        ("/etc/posd/terminal.pem", tls.client_cert_file),
        ("/etc/posd/terminal.key", tls.client_key_file),
        ("/etc/posd/mac.key", mac),
        ('state_dir = "/var/lib/posd"', f'state_dir = "{tmp_path / "state"}"'),
    ]:
        text = text.replace(old, str(new))
    config = parse_config(text, Path("example.toml"))
    defaults: dict[str, dict[str, object]] = {
        **OPERATIONS_DEFAULTS,
        "storage": {"state_dir": tmp_path / "state"},
    }
    for section, values in [*defaults.items(), *EXTENSION_DEFAULTS.items()]:
        actual = dataclasses.asdict(getattr(config, section))
        for key, value in values.items():
            assert actual[key] == value, f"{section}.{key}"
    assert config.ledger.ca_file == tls.ca_file
    assert list(config.qr.platform_keys) == [1]
