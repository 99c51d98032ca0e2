"""The lines of `posd check`, one function each: `CHECKS` is the list `posd check` runs, in the
order it prints them. A line is green (`ok`), red (`fail`) or yellow (`unknown`: could not be
told, which is not green either), with what to do.

Each function gets the `Situation`: the valid config, the running daemon's status object (None
when no posd answers, and why), and the devices survey for when no daemon holds them. What
only the running posd can tell (the ledger, both MQTT links) is read from its status object;
a device it holds (reader, scanner, audio) is the daemon's word while it runs, and looked at
directly only when no posd answers.

Thresholds:
- the terminal certificate must stay valid for `CERT_MIN_DAYS` (30) more days: the time for a
  renewal by post (posd enroll, 서로e음 operations, the technician back);
- the clock within `CLOCK_MAX_SKEW_S` (30 s) of the ledger's (ledger-iso8583.md; QR codes are
  checked against this clock);
- `DISK_MIN_FREE` (256 MiB) free for posd (not counting root's reserve) on the state dir's
  file system: a journal row takes about 0.7 KiB (measured), so this is a year of a busy
  shop's 1,000 payments a day, with room for SQLite's WAL and checkpoints.
"""

from __future__ import annotations

import asyncio
import datetime
import errno
import math
import os
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.x509.oid import NameOID

from drivers.audio import AudioError, build_player
from posd.cli.device_survey import DevicesReport, Host, survey
from posd.config import Config
from posd.ledger import CLOCK_MAX_SKEW_S

__all__ = [
    "CERT_MIN_DAYS",
    "CHECKS",
    "CLOCK_MAX_SKEW_S",
    "DISK_MIN_FREE",
    "Line",
    "Mark",
    "Situation",
]

CERT_MIN_DAYS = 30
DISK_MIN_FREE = 256 * 1024 * 1024

Mark = Literal["ok", "fail", "unknown"]
_JOURNAL = "journal.db"
_LOGS = "journalctl -u posd -e"


@dataclass(frozen=True, slots=True)
class Line:
    item: str
    mark: Mark
    detail: str
    fix: str | None = None


@dataclass
class Situation:
    config: Config
    status: Mapping[str, Any] | None
    """The running daemon's status object (GET /v1/status), None when it could not be had."""
    no_status: Line | None
    """Why there is no status: the `posd` line, red or yellow."""
    host: Host = field(default_factory=Host)
    sound: bool = False
    now: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))
    disk_min_free: int = DISK_MIN_FREE
    _survey: asyncio.Task[DevicesReport] | None = None

    async def devices(self) -> DevicesReport:
        """What is plugged in, PINGed once however many lines ask."""
        if self._survey is None:
            self._survey = asyncio.create_task(survey(self.host, self.config))
        return await self._survey

    def get(self, *keys: str) -> Any:
        value: Any = self.status
        for key in keys:
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return value


Check = Callable[[Situation], Coroutine[Any, Any, Line]]


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


async def check_daemon(s: Situation) -> Line:
    if s.no_status is not None:
        return s.no_status
    return Line(
        "posd", "ok", f"running, up {_duration(s.get('uptime_s'))} (posd {s.get('version')})"
    )


_DEVICE_FIX = {
    "card reader": "check the reader's cable and power; `posd devices` shows which port answers "
    "(stop posd first: systemctl stop posd, it holds the port)",
    "QR scanner": "plug the scanner in, set it to USB HID keyboard mode (a code in its manual); "
    "`posd devices` says what it sees",
}


async def _from_survey(s: Situation, device: str) -> Line:
    """A device line from the survey, when no daemon can say."""
    checks = [c for c in (await s.devices()).checks if c.device in (device, "libusb")]
    failed = [c for c in checks if c.found is False]
    if failed:
        fix = "apt-get install libusb-1.0-0" if failed[0].device == "libusb" else None
        return Line(device, "fail", failed[0].detail, fix or _DEVICE_FIX[device])
    unknown = [c for c in checks if c.found is None]
    if unknown or not checks:
        detail = unknown[0].detail if unknown else "not looked for"
        return Line(device, "unknown", detail, _DEVICE_FIX[device])
    return Line(device, "ok", checks[-1].detail)


async def check_reader(s: Situation) -> Line:
    if s.status is None:
        return await _from_survey(s, "card reader")
    reader = s.get("devices", "card_reader") or {}
    state, port = reader.get("state"), reader.get("port") or "its port"
    if state in ("ready", "busy"):
        firmware = f", firmware {reader['firmware']}" if reader.get("firmware") else ""
        doing = " (reading a card)" if state == "busy" else ""
        return Line("card reader", "ok", f"{state}{doing} on {port}{firmware}")
    if state == "disabled":
        return Line("card reader", "fail", "posd runs without a card reader", _LOGS)
    return Line("card reader", "fail", f"{state} ({port})", _DEVICE_FIX["card reader"])


async def check_scanner(s: Situation) -> Line:
    kind = s.config.qr_scanner.kind
    if kind == "none":
        return Line("QR scanner", "ok", 'not used (qr_scanner.kind = "none")')
    if s.status is None:
        return await _from_survey(s, "QR scanner")
    state = s.get("devices", "qr_scanner", "state")
    if state in ("ready", "busy"):
        return Line("QR scanner", "ok", f"{state} ({kind})")
    return Line("QR scanner", "fail", f"{state} ({kind})", _DEVICE_FIX["QR scanner"])


def _not_asked(item: str, s: Situation) -> Line:
    assert s.no_status is not None
    mark: Mark = "unknown" if s.no_status.mark == "unknown" else "fail"
    return Line(
        item,
        mark,
        "not checked: only the running posd can say",
        "see the posd line, then posd check again",
    )


async def check_ledger(s: Situation) -> Line:
    if s.status is None:
        return _not_asked("ledger", s)
    ledger = s.get("ledger") or {}
    where = f"{s.config.ledger.host}:{s.config.ledger.port}"
    if ledger.get("link") == "up":
        rtt = ledger.get("last_rtt_ms")
        rtt_text = f" (rtt {rtt:.0f} ms)" if isinstance(rtt, int | float) else ""
        return Line("ledger", "ok", f"signed on to {where}{rtt_text}")
    error = f": {ledger['last_error']}" if ledger.get("last_error") else ""
    return Line(
        "ledger",
        "fail",
        f"link {ledger.get('link')} to {where}{error}",
        "check the network, ledger.host and ledger.port, and the certificate line; "
        "journalctl -u posd | grep ledger",
    )


async def check_certificate(s: Situation) -> Line:
    ledger = s.config.ledger
    if not ledger.tls:
        return Line("certificate", "ok", "ledger.tls = false: none needed (a ledger on this box)")
    install = (
        "posd enroll makes the key and request; send the request to 서로e음 operations and put "
        "the certificate they return at ledger.cert_file"
    )
    # A new key beside the one in use: the running certificate keeps working until the new one
    # is there (posd enroll --force would replace the key under it).
    renew = (
        "posd enroll --key /etc/posd/terminal-new.key makes a new key and request beside the "
        "ones in use; send the request to 서로e음 operations, then name the new key and the "
        "certificate they return in ledger.key_file and ledger.cert_file and systemctl reload posd"
    )
    path = ledger.cert_file
    if path is None:
        return Line("certificate", "fail", "ledger.cert_file is not set", install)
    try:
        data = await asyncio.to_thread(path.read_bytes)
        cert = x509.load_pem_x509_certificates(data)[0]
    except OSError as exc:
        fix = "run posd check as root (sudo)" if exc.errno == errno.EACCES else install
        return Line("certificate", "fail", f"cannot read {path}: {exc.strerror}", fix)
    except ValueError:
        return Line("certificate", "fail", f"{path} holds no PEM certificate", install)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = f"CN={names[0].value!s}" if names else "no CN"
    after, before = cert.not_valid_after_utc, cert.not_valid_before_utc
    if before > s.now:
        return Line(
            "certificate",
            "fail",
            f"{path} ({subject}) is valid only from {before:%Y-%m-%d %H:%M} UTC",
            "check the box's clock (timedatectl status), or wait",
        )
    days = (after - s.now) / datetime.timedelta(days=1)
    until = f"{after:%Y-%m-%d}"
    if days < 0:
        return Line("certificate", "fail", f"{path} ({subject}) expired on {until}", renew)
    if days < CERT_MIN_DAYS:
        return Line(
            "certificate",
            "fail",
            f"{path} ({subject}) expires on {until}, in {math.floor(days)} days "
            f"(less than {CERT_MIN_DAYS})",
            renew,
        )
    return Line(
        "certificate", "ok", f"{path} ({subject}) valid until {until} ({math.floor(days)} days)"
    )


async def check_clock(s: Situation) -> Line:
    fix = "timedatectl set-ntp true, then timedatectl status: System clock synchronized: yes"
    if s.status is None:
        return Line("clock", "unknown", "not checked: posd compares it with the ledger's", fix)
    ledger = s.get("ledger") or {}
    if "clock_skew_s" not in ledger:
        return Line(
            "clock",
            "unknown",
            "this posd does not report the ledger's clock (ledger.clock_skew_s)",
            f"compare `date -u` with a trusted clock; {fix}",
        )
    skew = ledger["clock_skew_s"]
    if not isinstance(skew, int | float) and ledger.get("link") == "up":
        return Line(
            "clock",
            "unknown",
            "this posd does not report the ledger's clock yet (ledger.clock_skew_s is null)",
            f"compare `date -u` with a trusted clock; {fix}",
        )
    if not isinstance(skew, int | float):
        return Line(
            "clock", "unknown", "the ledger has not told its time yet (no sign-on)", "see ledger"
        )
    if abs(skew) > CLOCK_MAX_SKEW_S:
        return Line(
            "clock",
            "fail",
            f"{abs(skew):.0f} s off the ledger's (more than {CLOCK_MAX_SKEW_S:.0f} s): QR codes "
            "are checked against this clock",
            fix,
        )
    return Line("clock", "ok", f"within {abs(skew):.1f} s of the ledger's")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


async def check_disk(s: Situation) -> Line:
    state_dir = s.config.storage.state_dir
    where = _existing(state_dir)
    fix = (
        f"df -h {where}; free space (journalctl --vacuum-size=100M, apt-get clean) or fit a "
        "bigger disk"
    )
    if s.get("storage", "state") == "error":
        return Line("disk", "fail", f"the journal fails: {s.get('storage', 'last_error')}", fix)
    try:
        vfs = await asyncio.to_thread(os.statvfs, where)
    except OSError as exc:
        return Line("disk", "fail", f"cannot look at {where}: {exc.strerror}", fix)
    if vfs.f_flag & os.ST_RDONLY:
        return Line("disk", "fail", f"{where} is on a read-only file system", "mount it rw")
    free = vfs.f_bavail * vfs.f_frsize
    journal = state_dir / _JOURNAL
    try:
        size = f", the journal {_size(journal.stat().st_size)}"
    except OSError:
        size = ""
    detail = f"{_size(free)} free for {state_dir}{size}"
    if free < s.disk_min_free or vfs.f_favail == 0:
        need = f"less than {_size(s.disk_min_free)}" if vfs.f_favail else "no inode left"
        return Line("disk", "fail", f"{detail}: {need}", fix)
    return Line("disk", "ok", detail)


_MQTT_FIX = (
    "the broker's host and port, the network, mqtt.tls with its ca_file (and cert_file, "
    "key_file), mqtt.username and mqtt.password_file, mqtt.protocol (what the broker speaks)"
)


async def check_orders_link(s: Situation) -> Line:
    item = "orders link"
    if not s.config.orders.enabled:
        return Line(item, "ok", "not used (orders.enabled = false)")
    if s.status is None:
        return _not_asked(item, s)
    orders = s.get("orders") or {}
    host, port = s.config.orders_broker
    link = orders.get("link")
    if link == "up":
        return Line(item, "ok", f"subscribed to {s.config.orders_topic} at {host}:{port}")
    why = f": {orders['reason']}" if orders.get("reason") else ""
    return Line(
        item,
        "fail",
        f"link {link} to {host}:{port}{why}",
        f"{_MQTT_FIX.replace('host and port', 'host and port ([mqtt], or orders.host)')}; "
        "journalctl -u posd | grep 'mqtt orders'",
    )


async def check_monitoring_link(s: Situation) -> Line:
    item = "monitoring"
    mqtt = s.config.mqtt
    if not mqtt.enabled:
        return Line(item, "ok", "not used (mqtt.enabled = false): the operations centre is blind")
    if s.status is None:
        return _not_asked(item, s)
    section = s.get("mqtt") or {}
    where = f"{mqtt.host}:{mqtt.port}"
    if section.get("link") == "up":
        return Line(
            item,
            "ok",
            f"online at {where} as posd-{s.config.terminal.id} "
            f"({s.get('connects')} connects since start)",
        )
    error = f": {section['last_error']}" if section.get("last_error") else ""
    return Line(
        item,
        "fail",
        f"link {section.get('link')} to {where}{error}",
        f"{_MQTT_FIX} (the broker's ACL must let posd-{s.config.terminal.id} publish under "
        f"{s.config.monitoring_topic}/); journalctl -u posd | grep 'mqtt monitoring'",
    )


async def check_audio(s: Situation) -> Line:
    audio = s.config.audio
    if audio.output == "none":
        if s.config.orders.enabled:
            return Line(
                "audio",
                "fail",
                'audio.output = "none": an order would not be heard',
                "set audio.output (auto takes ALSA, the printer buzzer or the console beeper), "
                "then posd chime",
            )
        return Line("audio", "ok", 'not used (audio.output = "none", orders off)')
    player = build_player(audio.output, audio.device, audio.volume)
    fix = "check the speaker, its cable and volume, and audio.output/audio.device; posd chime"
    if s.status is not None:
        # The daemon's own word: its outputs as its player last found them.
        state, output = s.get("devices", "audio", "state"), s.get("devices", "audio", "output")
        if state not in ("ready", "busy"):
            reason = s.get("orders", "reason")
            why = f": {reason}" if isinstance(reason, str) and "audio" in reason else ""
            return Line("audio", "fail", f"{state} ({output}), says posd{why}", fix)
        if not s.sound:
            return Line("audio", "ok", f"{output} {state}, says posd; --sound to hear it")
    else:
        status = await player.check()
        if status.state not in ("ready", "busy"):
            return Line("audio", "fail", f"{status.state}: {status.detail}", fix)
        if not s.sound:
            detail = f"{status.output} ready ({status.detail}); --sound to hear it"
            return Line("audio", "ok", detail)
    try:
        playback = await player.play()
    except AudioError as exc:
        return Line("audio", "fail", str(exc), fix)
    return Line("audio", "ok", f"played the chime on {playback.output}: did you hear it?")


CHECKS: tuple[Check, ...] = (
    check_daemon,
    check_reader,
    check_scanner,
    check_ledger,
    check_certificate,
    check_clock,
    check_disk,
    check_orders_link,
    check_monitoring_link,
    check_audio,
)
