"""The link's exceptions, and `describe`: what went wrong with a connection, in words to log.

aiomqtt turns every OSError of a connect (refused, unreachable, TLS) into a bare MqttError
raised `from None`; the original stays in `__context__`, where `describe` finds it. Texts name
the broker and the setting to check, never a password (paho puts none in its errors).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import aiomqtt

from posd.mqtt import reach


class LinkError(Exception):
    """Base of the link's errors."""


class LinkDown(LinkError):
    """`send` found no connection: nothing was handed to the broker."""


class MaybeSent(LinkError):
    """`send` handed the message over but its PUBACK never came: it may have arrived, and paho
    may send it again on the next connect. Never send it again blindly."""


class SessionFailed(LinkError):
    """This connection cannot serve (a refused subscription, a handler that could not take a
    message): the link drops it and connects again after the backoff."""


# CONNACK reason codes (MQTT 5 3.2.2.2; paho maps 3.1.1's return codes 4 and 5 onto these).
_BAD_CREDENTIALS = frozenset({4, 5, 0x86, 0x87, 0x8C})
_UNSPECIFIED = 0x80
_CONNACK_HINTS = {
    0x85: "the broker does not accept this client id",
    0x84: "the broker does not speak this MQTT version",
    0x88: "the broker is unavailable",
    0x89: "the broker is busy",
    0x8A: "this client is banned",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def describe(exc: BaseException, address: str) -> str:
    """One line on why a connection to `address` failed or ended."""
    for e in _chain(exc):
        code = reach.refusal_code(e)
        if code is not None:
            if code in _BAD_CREDENTIALS:
                return (
                    f"broker {address} refused the credentials ({e}): check mqtt.username "
                    "and mqtt.password_file (and the broker's ACL)"
                )
            hint = _CONNACK_HINTS.get(code, "the broker refused the connection")
            return f"{hint} ({address}: {e})"
        if isinstance(e, SessionFailed):
            return str(e)
        if isinstance(e, reach.ClosedBeforeConnack):
            detail = e.detail or "no reason given"
            if "SSL" in detail or "alert" in detail:
                hint = (
                    " (the broker wants a client certificate: mqtt.cert_file)"
                    if "CERTIFICATE_REQUIRED" in detail.upper()
                    else ""
                )
                return f"TLS with {address} failed after the handshake: {detail}{hint}"
            return f"{address} closed the connection before answering CONNECT: {detail}"
        if isinstance(e, ssl.SSLCertVerificationError):
            return (
                f"TLS: the certificate of {address} is not trusted ({e.verify_message}): "
                "check mqtt.ca_file and the broker's host name"
            )
        if isinstance(e, ssl.SSLError):
            reason = e.reason or str(e)
            hint = " (the broker wants a client certificate: mqtt.cert_file)"
            return f"TLS with {address} failed: {reason}" + (
                hint if "CERTIFICATE_REQUIRED" in str(reason).upper() else ""
            )
        if isinstance(e, ConnectionRefusedError):
            return f"{address} refused the TCP connection (no broker listening there)"
        if isinstance(e, socket.gaierror):
            return f"cannot resolve the broker's host name ({address}: {e.strerror})"
        if isinstance(e, TimeoutError):
            return f"no answer from {address} in time"
        if isinstance(e, OSError):
            return f"cannot reach {address}: {e.strerror or e}"
        if isinstance(e, aiomqtt.MqttCodeError):
            if getattr(e.rc, "value", e.rc) == _UNSPECIFIED:
                # paho's name for a socket that closed under it (MQTT_ERR_CONN_LOST).
                return f"connection to {address} closed (the broker stopped or the network failed)"
            return f"connection to {address} ended: {e}"
    text = str(exc)
    if text == "Operation timed out":
        return f"no answer from {address} in time"
    return f"{address}: {text or type(exc).__name__}"
