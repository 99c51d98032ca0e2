"""A complete, valid posd config in a test's tmp dir, for tests that load it or start the daemon.

    path = write_config(tmp_path)                                  # plain-TCP ledger, no MQTT
    path = write_config(tmp_path, ledger={"port": sim.port}, card_reader={"port": pty_path})
    path = write_config(tmp_path, ledger={"tls": True})            # makes CA, certs and keys
    path = write_config(tmp_path, mqtt={"enabled": True, "port": 1883}, orders={"enabled": True})

An override merges into its section; a key set to None is removed, a section set to None too.
Everything the config names lives under tmp_path: posd.toml, mac.key, api.token, state/ (the
state_dir, created empty) and the API socket path api.sock, plus tls/ when TLS is asked for.
The defaults that would touch the machine are off: no MQTT, no orders, no audio, no QR scanner.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from posd.config import ConfigError, load_config

TERMINAL_ID = "T0000001"
MERCHANT_ID = "M00000000000001"
MAC_KEY_HEX = hashlib.sha256(b"posd test MAC key").hexdigest()
API_TOKEN = "posd-test-token-" + hashlib.sha256(b"posd test API token").hexdigest()[:32]
PLATFORM_KEY_ID = 1

_PLATFORM_SEED = hashlib.sha256(b"posd test platform key").digest()


def platform_key_pair() -> Ed25519PrivateKey:
    """The throwaway platform signing key whose public half is key id 1 in `write_config`."""
    return Ed25519PrivateKey.from_private_bytes(_PLATFORM_SEED)


def public_key_b64(private_key: Ed25519PrivateKey) -> str:
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return b64encode(raw).decode()


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and two leaf certificates it signed, as PEM files."""

    ca_file: Path
    server_cert_file: Path  # for localhost and 127.0.0.1: the simulated ledger or a broker
    server_key_file: Path
    client_cert_file: Path  # this terminal's, CN = TERMINAL_ID
    client_key_file: Path


def write_tls_files(directory: Path) -> TlsFiles:
    """Make a CA, a server and a client certificate (EC P-256, valid for 30 days) in directory."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "posd test CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write_pem(directory / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))

    def leaf(name: str, common_name: str, san: list[x509.GeneralName]) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (
            _builder(subject, ca_name, key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        _write_pem(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        _write_pem(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        key_path.chmod(0o600)
        return cert_path, key_path

    server_cert, server_key = leaf(
        "server",
        "localhost",
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client_cert, client_key = leaf("client", TERMINAL_ID, [x509.DNSName("terminal.posd.test")])
    return TlsFiles(directory / "ca.pem", server_cert, server_key, client_cert, client_key)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
    )


def _write_pem(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def write_secret(path: Path, content: str | bytes) -> Path:
    """Write a secret file as posd accepts it: no access for other users (0600)."""
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(0o600)
    return path


def base_config(tmp_path: Path) -> dict[str, dict[str, object]]:
    """The sections `write_config` writes before overrides, with every file they name created."""
    mac_key = write_secret(tmp_path / "mac.key", MAC_KEY_HEX + "\n")
    token = write_secret(tmp_path / "api.token", API_TOKEN + "\n")
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700, exist_ok=True)
    return {
        "terminal": {"id": TERMINAL_ID, "merchant_id": MERCHANT_ID, "benefit_plus_rate_bps": 0},
        # A path that never exists, so no test probes the host's own serial ports.
        "card_reader": {
            "port": str(tmp_path / "no-reader"),
            "baudrate": 115200,
            "accepted_prefixes": ["9410"],
        },
        "qr_scanner": {"kind": "none"},
        "qr": {"platform_keys": {str(PLATFORM_KEY_ID): public_key_b64(platform_key_pair())}},
        "ledger": {
            "host": "127.0.0.1",
            "port": 8583,
            "tls": False,
            "mac_key_file": str(mac_key),
            "timeout_s": 15,
        },
        "offline": {"enabled": True},
        "mqtt": {"enabled": False, "host": "127.0.0.1", "port": 1883},
        "orders": {"enabled": False},
        "audio": {"output": "none"},
        "api": {"socket": str(tmp_path / "api.sock"), "tcp_port": 0, "token_file": str(token)},
        "storage": {"state_dir": str(state_dir)},
        "logging": {"level": "debug", "format": "text"},
    }


def write_config(tmp_path: Path, **overrides: Mapping[str, object] | None) -> Path:
    """Write tmp_path/posd.toml: `base_config` with the overrides merged in; returns its path."""
    sections: dict[str, dict[str, object]] = base_config(tmp_path)
    for name, override in overrides.items():
        if override is None:
            sections.pop(name, None)
            continue
        section = sections.setdefault(name, {})
        for key, value in override.items():
            if value is None:
                section.pop(key, None)
            else:
                section[key] = value
    _add_tls_files(tmp_path, sections)
    path = tmp_path / "posd.toml"
    path.write_text(to_toml(sections), encoding="utf-8")
    return path


def _add_tls_files(tmp_path: Path, sections: dict[str, dict[str, object]]) -> None:
    """Fill in the CA/cert/key files a TLS link needs, unless the test named its own."""
    ledger, mqtt = sections.get("ledger", {}), sections.get("mqtt", {})
    ledger_tls = ledger.get("tls") is True and "ca_file" not in ledger
    mqtt_tls = mqtt.get("tls") is True and "ca_file" not in mqtt
    if not (ledger_tls or mqtt_tls):
        return
    tls = write_tls_files(tmp_path / "tls")
    if ledger_tls:
        ledger["ca_file"] = str(tls.ca_file)
        ledger.setdefault("cert_file", str(tls.client_cert_file))
        ledger.setdefault("key_file", str(tls.client_key_file))
    if mqtt_tls:
        mqtt["ca_file"] = str(tls.ca_file)


def to_toml(sections: Mapping[str, Mapping[str, object]]) -> str:
    """TOML for sections of scalars, arrays and inline tables: what posd's config holds."""
    out: list[str] = []
    for name, section in sections.items():
        out.append(f"[{_toml_key(name)}]")
        out.extend(f"{_toml_key(key)} = {_toml_value(value)}" for key, value in section.items())
        out.append("")
    return "\n".join(out)


def _toml_key(key: str) -> str:
    if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key):
        return key
    return _toml_string(key)


def _toml_string(text: str) -> str:
    # JSON escapes are valid TOML escapes, except that TOML also wants DEL escaped and forbids
    # the surrogate pairs ensure_ascii would produce.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return _toml_string(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


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
