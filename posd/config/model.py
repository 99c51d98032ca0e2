"""The configuration as typed, frozen sections: what a valid config file becomes.

Attribute names are the TOML key names. A `Config` holds the paths of the secret files, never
the secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

QrScannerKind = Literal["usb-hid", "serial", "none"]
AudioOutput = Literal["auto", "alsa", "pulse", "escpos", "beep", "none"]
EscposForm = Literal["esc-paren-a", "esc-b"]
MqttProtocol = Literal["3.1.1", "5"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]


@dataclass(frozen=True, slots=True)
class TerminalConfig:
    id: str
    merchant_id: str
    benefit_plus_rate_bps: int


@dataclass(frozen=True, slots=True)
class CardReaderConfig:
    port: str | None
    """The reader's device path; None for "auto" (/dev/posd-reader, then a probe)."""
    baudrate: int
    accepted_prefixes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QrScannerConfig:
    kind: QrScannerKind
    usb_vendor_id: int | None
    """None for "auto": any HID keyboard-class scanner from the known-vendor table."""
    usb_product_id: int | None
    port: str | None
    """The serial scanner's device path; None when not set (only kind "serial" needs it)."""
    baudrate: int


@dataclass(frozen=True, slots=True)
class QrConfig:
    platform_keys: Mapping[int, bytes]
    """Key id (0-255) → raw 32-byte Ed25519 public key of the 서로e음 platform."""


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    host: str
    port: int
    tls: bool
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    mac_key_file: Path
    timeout_s: float


@dataclass(frozen=True, slots=True)
class OfflineConfig:
    enabled: bool
    max_payment: int
    max_total: int
    max_count: int
    max_per_account: int
    max_age_h: int


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """The monitoring broker. Its tls, files and username also serve the orders link."""

    enabled: bool
    host: str
    port: int
    protocol: MqttProtocol
    """MQTT 3.1.1 or 5 (an extension of operations.md's keys) of the monitoring link, and the
    orders link's default (`Config.orders_protocol`). Under 5 the retained state expires."""
    tls: bool
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    username: str | None
    password_file: Path | None
    base_topic: str
    operator_keys: tuple[bytes, ...]
    """Raw 32-byte Ed25519 public keys whose signatures authorize commands."""
    homeassistant_discovery: bool
    """Publish one Home Assistant device-discovery config for this box."""
    homeassistant_prefix: str
    """Home Assistant's discovery prefix."""


@dataclass(frozen=True, slots=True)
class OrdersConfig:
    enabled: bool
    host: str | None
    """None: the [mqtt] broker. See `Config.orders_broker` for the resolved address."""
    port: int | None
    """None: mqtt.port."""
    protocol: MqttProtocol | None
    """None: mqtt.protocol. See `Config.orders_protocol`."""
    topic: str
    """May hold {merchant_id}; `Config.orders_topic` is the expanded topic."""
    repeat_s: float
    escalate_after_s: float
    missed_after_s: float


@dataclass(frozen=True, slots=True)
class AudioConfig:
    output: AudioOutput
    device: str | None
    volume: int
    escpos_form: EscposForm
    """The receipt printer's beep command: Epson's `ESC ( A` or `ESC B n t`."""
    printer_port: str | None
    """The printer whose buzzer output "auto" falls back to; None: the first USB printer."""
    printer_baudrate: int
    """For a printer on a serial port."""


@dataclass(frozen=True, slots=True)
class ApiConfig:
    socket: Path
    tcp_port: int
    """0: no TCP listener; otherwise a port on 127.0.0.1 only."""
    token_file: Path | None


@dataclass(frozen=True, slots=True)
class StorageConfig:
    state_dir: Path


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: LogLevel
    format: LogFormat


@dataclass(frozen=True, slots=True)
class Config:
    terminal: TerminalConfig
    card_reader: CardReaderConfig
    qr_scanner: QrScannerConfig
    qr: QrConfig
    ledger: LedgerConfig
    offline: OfflineConfig
    mqtt: MqttConfig
    orders: OrdersConfig
    audio: AudioConfig
    api: ApiConfig
    storage: StorageConfig
    logging: LoggingConfig
    source: Path
    sha256: str
    """Hex SHA-256 of the file's bytes: the MQTT state's config_sha256."""

    @property
    def monitoring_topic(self) -> str:
        """`{mqtt.base_topic}/{terminal.id}`, the prefix of every monitoring topic."""
        return f"{self.mqtt.base_topic}/{self.terminal.id}"

    @property
    def orders_topic(self) -> str:
        return self.orders.topic.replace("{merchant_id}", self.terminal.merchant_id)

    @property
    def orders_broker(self) -> tuple[str, int]:
        """Host and port of the orders link: its own, or the [mqtt] broker's where unset."""
        host = self.orders.host if self.orders.host is not None else self.mqtt.host
        port = self.orders.port if self.orders.port is not None else self.mqtt.port
        return host, port

    @property
    def orders_protocol(self) -> MqttProtocol:
        """The orders link's MQTT version: its own, or the [mqtt] one where unset."""
        return self.orders.protocol if self.orders.protocol is not None else self.mqtt.protocol
