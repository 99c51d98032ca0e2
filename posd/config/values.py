"""Format rules for single config values: identifiers, hosts, topics, devices and public keys.

Each check returns what is wrong with a value, phrased `<what is wrong>, expected <what>`, or None.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from posd.config.fields import ValueCheck, show

STANDARD_BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
READER_BAUDRATES = tuple(rate for rate in STANDARD_BAUDRATES if rate >= 9600)

MAX_TOPIC_BYTES = 256
MAX_UNIX_SOCKET_PATH_BYTES = 107  # sun_path is 108 bytes with its terminating NUL

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_USB_ID = re.compile(r"0[xX][0-9A-Fa-f]{1,4}")
_KEY_ID = re.compile(r"0|[1-9][0-9]{0,2}")
# A DER SubjectPublicKeyInfo of an Ed25519 key is this prefix and the 32 raw bytes.
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
# These would break the MQTT topics the ids are placed in.
_TOPIC_UNSAFE = "/+#"


def ans(length: int, field: str) -> ValueCheck[str]:
    """ISO 8583 ans of fixed length, also safe inside an MQTT topic level."""

    def check(value: str) -> str | None:
        expected = (
            f"expected exactly {length} printable ASCII characters ({field}), "
            f"none of {' '.join(_TOPIC_UNSAFE)}"
        )
        if len(value) != length:
            return f"{show(value)} has {len(value)} characters, {expected}"
        if not all(" " <= char <= "~" for char in value):
            return f"{show(value)} holds a non-ASCII or control character, {expected}"
        if any(char in _TOPIC_UNSAFE for char in value):
            return f"{show(value)} holds an MQTT topic separator or wildcard, {expected}"
        if value.strip() != value:
            return f"{show(value)} has leading or trailing spaces, {expected}"
        return None

    return check


def hostname(value: str) -> str | None:
    expected = "expected a host name (ledger.example) or an IP address (192.0.2.10, 2001:db8::1)"
    if not value:
        return f"is empty, {expected}"
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return None
    if value.startswith("[") and value.endswith("]"):
        return f"{show(value)} has brackets, {expected} without brackets"
    if ":" in value:
        return f"{show(value)} holds a ':', {expected}; the port goes in its own key"
    labels = value.removesuffix(".").split(".")
    if len(value) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return f"{show(value)} is not a valid host name, {expected}"
    return None


def device_path(value: str) -> str | None:
    if not value.startswith("/") or "\0" in value:
        return f"{show(value)} is not an absolute device path, expected e.g. /dev/ttyUSB0"
    return None


def reader_port(value: str) -> str | None:
    if value == "auto":
        return None
    problem = device_path(value)
    return problem and problem.replace("expected", 'expected "auto" or')


def baudrate(allowed: tuple[int, ...]) -> ValueCheck[int]:
    def check(value: int) -> str | None:
        if value in allowed:
            return None
        return f"{value} is not a standard rate, expected one of {', '.join(map(str, allowed))}"

    return check


def topic(placeholders: frozenset[str]) -> ValueCheck[str]:
    """An MQTT topic to publish under or subscribe to: no wildcards, no empty levels."""
    if placeholders:
        allowed = "the only placeholder allowed is " + ", ".join(
            "{" + name + "}" for name in sorted(placeholders)
        )
    else:
        allowed = "placeholders are not allowed here"

    def check(value: str) -> str | None:
        expected = "expected a topic such as posd or baedal/{merchant_id}/orders"
        if not value:
            return f"is empty, {expected}"
        if "+" in value or "#" in value:
            return f"{show(value)} holds an MQTT wildcard (+ or #), {expected}"
        if any(char < " " or char == "\x7f" for char in value):
            return f"holds a control character, {expected}"
        if value.startswith("$"):
            return f"{show(value)} starts with $, which brokers reserve; {expected}"
        if value.startswith("/") or value.endswith("/") or "//" in value:
            return f"{show(value)} has an empty topic level, {expected}"
        if len(value.encode()) > MAX_TOPIC_BYTES:
            return f"is longer than {MAX_TOPIC_BYTES} bytes, {expected}"
        for name in _PLACEHOLDER.findall(value):
            if name not in placeholders:
                return f"has the placeholder {{{name}}}; {allowed}"
        if "{" in _PLACEHOLDER.sub("", value) or "}" in _PLACEHOLDER.sub("", value):
            return f"{show(value)} has an unmatched brace; {allowed}"
        return None

    return check


def unix_socket_path(value: str) -> str | None:
    if not value:
        return "is empty, expected the path of the API's Unix socket"
    if len(value.encode()) > MAX_UNIX_SOCKET_PATH_BYTES:
        return (
            f"is {len(value.encode())} bytes long, expected a Unix socket path of at most "
            f"{MAX_UNIX_SOCKET_PATH_BYTES} bytes"
        )
    return None


def card_prefix(value: str) -> str | None:
    # No echo of the value: someone may have pasted a whole card number here.
    if not value.isascii() or not value.isdigit() or not 1 <= len(value) <= 11:
        return 'is not 1 to 11 digits, expected a card number prefix such as "9410"'
    return None


def key_id(text: str) -> int:
    """The key id of `platform_keys`: a TOML key holding a decimal 0-255."""
    if not _KEY_ID.fullmatch(text) or int(text) > 255:
        raise ValueError('is not a key id, expected a decimal number from 0 to 255 such as "1"')
    return int(text)


def ed25519_public_key(text: str) -> bytes:
    """Raw 32-byte Ed25519 public key from standard padded base64; ValueError says what is wrong.

    Key material is never quoted back: a private key pasted by mistake must not end up in a log.
    """
    expected = "expected base64 (standard, padded) of a raw 32-byte Ed25519 public key"
    if "BEGIN" in text:
        raise ValueError(f"looks like PEM, {expected}")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"is not valid base64, {expected}") from None
    if len(raw) == len(_ED25519_SPKI_PREFIX) + 32 and raw.startswith(_ED25519_SPKI_PREFIX):
        raise ValueError(
            f"is a DER SubjectPublicKeyInfo, {expected} (its last 32 bytes, base64-encoded)"
        )
    if len(raw) != 32:
        raise ValueError(f"decodes to {len(raw)} bytes, {expected}")
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ValueError(f"is not a valid Ed25519 public key, {expected}") from None
    return raw


def usb_id(value: object) -> tuple[int | None, str | None]:
    """("auto" → None) or an id 0x0000-0xffff, given as a "0x05e0" string or a TOML integer."""
    expected = 'expected "auto", a hex string such as "0x05e0", or an integer from 0 to 65535'
    if value == "auto":
        return None, None
    if isinstance(value, str):
        if _USB_ID.fullmatch(value):
            return int(value[2:], 16), None
        return None, f"{show(value)} is not a USB id, {expected}"
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFF:
        return value, None
    return None, f"{show(value)} is not a USB id, {expected}"
