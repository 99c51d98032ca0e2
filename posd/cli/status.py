"""`posd status` and `posd saf`: ask the running daemon over the local API socket.

Exit codes follow sysexits: 0 ok, 69 daemon unreachable (or the ledger, for a flush),
77 no permission on the socket, 78 config unusable.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from posd.api import ApiClient, ApiPermissionDenied, ApiRequestError, ApiUnavailable
from posd.config import ConfigError, load_config

_T = TypeVar("_T")
_NOT_RUNNING = "is posd running? (systemctl status posd)"


def _err(message: str) -> None:
    print(f"posd: {message}", file=sys.stderr)


def _socket_path(config_path: str) -> Path | None:
    try:
        return load_config(config_path).api.socket
    except ConfigError as exc:
        _err(f"cannot use the config:\n{exc}")
        return None


def _ask(socket_path: Path, call: Callable[[ApiClient], Awaitable[_T]]) -> _T | int:
    """The answer, or the exit code after saying what went wrong and what to do."""

    async def run() -> _T:
        async with ApiClient(socket_path) as api:
            return await call(api)

    try:
        return asyncio.run(run())
    except ApiPermissionDenied:
        _err(f"no permission to use {socket_path}; run as root or as a member of group posd")
        return os.EX_NOPERM
    except ApiUnavailable:
        _err(f"nothing answers on {socket_path}: {_NOT_RUNNING}")
        return os.EX_UNAVAILABLE
    except TimeoutError:
        _err(f"the daemon did not answer on {socket_path} in time; check `journalctl -u posd`")
        return os.EX_UNAVAILABLE
    except ApiRequestError as exc:
        _err(f"the daemon refused: {exc.message}")
        # 503: a device or the ledger is not ready; what is queued stays queued meanwhile.
        return os.EX_UNAVAILABLE if exc.status == 503 else os.EX_SOFTWARE


def _get(data: Mapping[str, Any], *keys: str) -> Any:
    value: Any = data
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _show(value: object) -> str:
    return "-" if value is None else str(value)


def _printable(text: str) -> str:
    """`text` with control and format characters escaped: the state holds text from devices
    and peers, and a terminal must not take any of it as a command (ESC sequences)."""
    return "".join(
        ch if unicodedata.category(ch) not in ("Cc", "Cf", "Cs") else _escape(ord(ch))
        for ch in text
    )


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _won(value: object) -> str:
    return f"{value:,} won" if isinstance(value, int) else "? won"


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def render_status(state: Mapping[str, Any]) -> str:
    """The state object of mqtt.md as lines a technician reads at a glance."""
    ledger = _get(state, "ledger") or {}
    link = _show(ledger.get("link"))
    if isinstance(ledger.get("last_rtt_ms"), int | float):
        link += f" (rtt {ledger['last_rtt_ms']:.1f} ms)"
    if isinstance(ledger.get("clock_skew_s"), int | float):
        link += f", clock skew {ledger['clock_skew_s']:+.1f} s"
    # While the link is up, its last error is history that would only alarm a technician.
    if ledger.get("last_error") and ledger.get("link") != "up":
        link += f", last error: {ledger['last_error']}"
    reader = _get(state, "devices", "card_reader") or {}
    reader_line = _show(reader.get("state"))
    if reader.get("port"):
        reader_line += f" on {reader['port']}"
    if reader.get("firmware"):
        reader_line += f", firmware {reader['firmware']}"
    scanner = _get(state, "devices", "qr_scanner") or {}
    audio = _get(state, "devices", "audio") or {}
    saf = _get(state, "saf") or {}
    saf_line = f"{_show(saf.get('pending'))} pending"
    if saf.get("pending"):
        saf_line += f", {_won(saf.get('pending_amount'))}"
        saf_line += f", oldest {_duration(saf.get('oldest_age_s'))} ago"
    if saf.get("needs_attention"):
        # Entries the ledger answered without settling: someone must look at them.
        saf_line += f", {_show(saf.get('needs_attention'))} NEED ATTENTION (posd saf)"
    if saf.get("alarm"):
        saf_line += ", ALARM: an entry is older than offline.max_age_h"
    storage = _get(state, "storage") or {}
    storage_line = _show(storage.get("state"))
    if storage.get("last_error") and storage.get("state") != "ready":
        storage_line += f": {storage['last_error']} (free space under storage.state_dir)"
    orders = _get(state, "orders") or {}
    orders_line = (
        f"{_show(orders.get('alerting'))} alerting, {_show(orders.get('missed_today'))} missed "
        f"today, link {_show(orders.get('link'))}"
    )
    if orders.get("can_alert") is False:
        # The shop cannot hear an order now: say so loudest of all.
        orders_line += f"; DEAF: {_show(orders.get('reason'))}"
    mqtt = _get(state, "mqtt") or {}
    mqtt_line = f"{_show(mqtt.get('link'))}, {_show(state.get('connects'))} connects"
    if mqtt.get("queued"):
        mqtt_line += f", {mqtt['queued']} events waiting"
    if mqtt.get("dropped"):
        mqtt_line += f", {mqtt['dropped']} dropped"
    if mqtt.get("last_error") and mqtt.get("link") != "up":
        mqtt_line += f", last error: {mqtt['last_error']}"
    today = _get(state, "payments_today") or {}
    rows = [
        *_api_rows(_get(state, "api")),
        ("ledger", link),
        ("card reader", reader_line),
        ("qr scanner", f"{_show(scanner.get('state'))} ({_show(scanner.get('kind'))})"),
        ("audio", f"{_show(audio.get('state'))} ({_show(audio.get('output'))})"),
        ("saf queue", saf_line),
        ("journal", storage_line),
        ("orders", orders_line),
        ("monitoring", mqtt_line),
        (
            "today",
            f"{_show(today.get('approved'))} approved, {_show(today.get('declined'))} declined, "
            f"{_won(today.get('amount'))}",
        ),
    ]
    head = (
        f"posd {_show(state.get('version'))} on terminal {_show(state.get('terminal_id'))} "
        f"(merchant {_show(state.get('merchant_id'))}), up {_duration(state.get('uptime_s'))}"
    )
    if state.get("ts"):
        head += f", as of {state['ts']}"
    lines = [head, *(f"  {name:<12} {value}" for name, value in rows)]
    return "\n".join(_printable(line) for line in lines)


def _api_rows(api: object) -> list[tuple[str, str]]:
    """The local API's own row: the state object's `api` section (not in mqtt.md)."""
    if not isinstance(api, Mapping):
        return []
    line = (
        f"{_show(api.get('socket'))}, {_show(api.get('connections'))} of "
        f"{_show(api.get('max_connections'))} connections"
    )
    tcp = api.get("tcp")
    if isinstance(tcp, Mapping) and tcp.get("state") != "disabled":
        line += f"; tcp 127.0.0.1:{_show(tcp.get('port'))} {_show(tcp.get('state'))}"
        if tcp.get("last_error") and tcp.get("state") != "listening":
            line += f" ({tcp['last_error']})"
    return [("local api", line)]


def render_saf(queue: Sequence[Mapping[str, Any]]) -> str:
    """The store-and-forward queue, oldest first; only masked fields are ever printed."""
    if not queue:
        return "store-and-forward queue: empty"
    lines = [f"store-and-forward queue: {len(queue)} waiting, oldest first"]
    for entry in queue:
        last4 = entry.get("card_last4") or entry.get("account_last4")
        who = f"****{last4}" if isinstance(last4, str) else "-"
        line = (
            f"  {_show(entry.get('queued_at'))}  {_show(entry.get('kind')):<8} "
            f"{_show(entry.get('payment_id'))}  {_won(entry.get('amount'))}  "
            f"stan {_show(entry.get('stan'))}  {who}  attempts {_show(entry.get('attempts'))}"
        )
        if entry.get("needs_attention"):
            line += f"  NEEDS ATTENTION (ledger answered {_show(entry.get('refused_code'))})"
        if entry.get("last_error"):
            line += f"  last error: {entry['last_error']}"
        if entry.get("next_attempt_at"):
            line += f"  next try {_show(entry['next_attempt_at'])}"
        lines.append(_printable(line))
    return "\n".join(lines)


def status(config_path: str, as_json: bool) -> int:
    socket_path = _socket_path(config_path)
    if socket_path is None:
        return os.EX_CONFIG
    state = _ask(socket_path, lambda api: api.status())
    if isinstance(state, int):
        return state
    if as_json:
        print(json.dumps(state, indent=2, ensure_ascii=False))
    else:
        print(render_status(state))
    return os.EX_OK


def saf(config_path: str, flush: bool) -> int:
    socket_path = _socket_path(config_path)
    if socket_path is None:
        return os.EX_CONFIG
    if not flush:
        queue = _ask(socket_path, lambda api: api.saf())
        if isinstance(queue, int):
            return queue
        print(render_saf(queue))
        return os.EX_OK
    result = _ask(socket_path, lambda api: api.saf_flush())
    if isinstance(result, int):
        return result
    print(
        f"forwarded {_show(result.get('forwarded'))}, {_show(result.get('pending'))} still waiting"
    )
    return os.EX_OK
