"""The answer of the `diagnostics` command: versions, device details (with the card reader's
SRL/1 link statistics), the store-and-forward queue, the components, the links, and the last
warnings and errors posd logged (masked as the log is).
"""

from __future__ import annotations

import collections
import logging
import platform
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, Protocol

from posd import __version__
from posd.logs import redact
from posd.monitoring.state import StateBuilder, rfc3339
from posd.mqtt import LinkState
from posd.runtime import Runtime

RECENT_PROBLEMS: Final = 20
QUEUE_ENTRIES_SHOWN: Final = 20
MAX_MESSAGE_CHARS: Final = 300
_PACKAGES: Final = ("aiomqtt", "paho-mqtt", "aiohttp", "cryptography", "pyserial", "pyusb")
_WATCHED_LOGGERS: Final = ("posd", "drivers")


class _LinkStats(Protocol):
    def as_dict(self) -> dict[str, int]: ...


class _ReaderInfo(Protocol):
    @property
    def model(self) -> str: ...
    @property
    def firmware(self) -> str: ...
    @property
    def serial(self) -> str: ...


class ReaderDetails(Protocol):
    """drivers.card_reader.CardReader as diagnostics reads it."""

    @property
    def state(self) -> str: ...
    @property
    def port(self) -> str | None: ...
    @property
    def info(self) -> _ReaderInfo | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def stats(self) -> _LinkStats: ...
    @property
    def dropped_messages(self) -> int: ...


class ScannerDetails(Protocol):
    """A drivers.qr_scanner scanner as diagnostics reads it."""

    @property
    def state(self) -> str: ...
    @property
    def device(self) -> str | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def scans(self) -> int: ...
    @property
    def discarded(self) -> int: ...


class RecentProblems(logging.Handler):
    """The last warnings and errors of posd's and the drivers' loggers, masked."""

    def __init__(self, size: int = RECENT_PROBLEMS) -> None:
        super().__init__(logging.WARNING)
        self._records: collections.deque[dict[str, object]] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(_WATCHED_LOGGERS):
            return
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message += f" ({type(error).__name__}: {error})"
        text = redact(" ".join(message.split()))
        self._records.append(
            {
                "ts": rfc3339(record.created),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": text[:MAX_MESSAGE_CHARS],
            }
        )

    def recent(self) -> list[dict[str, object]]:
        return list(self._records)


def versions() -> dict[str, str | None]:
    # Imported here: importlib.metadata (with zipfile, csv, email) is only for this answer,
    # and would cost the daemon its memory from start to stop.
    import importlib.metadata

    found: dict[str, str | None] = {
        "posd": __version__,
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
    }
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def reader_details(reader: ReaderDetails | None) -> dict[str, object]:
    if reader is None:
        return {"state": "disabled"}
    info = reader.info
    return {
        "state": reader.state,
        "port": reader.port,
        "model": info.model if info is not None else None,
        "firmware": info.firmware if info is not None else None,
        "serial": info.serial if info is not None else None,
        "last_error": redact(reader.last_error) if reader.last_error else None,
        "link_stats": reader.stats.as_dict(),
        "dropped_messages": reader.dropped_messages,
    }


def scanner_details(scanner: ScannerDetails | None, kind: str) -> dict[str, object]:
    if scanner is None:
        return {"state": "disabled", "kind": kind}
    return {
        "state": scanner.state,
        "kind": kind,
        "device": scanner.device,
        "last_error": redact(scanner.last_error) if scanner.last_error else None,
        "scans": scanner.scans,
        "discarded": scanner.discarded,
    }


class Diagnostics:
    """Builds the `diagnostics` answer from what the stack gives it: `reader` and `scanner`
    find the running stack's drivers (None: not configured, or no stack running)."""

    def __init__(
        self,
        runtime: Runtime,
        state: StateBuilder,
        queue: Callable[[], Awaitable[list[dict[str, object]]]],
        *,
        reader: Callable[[], ReaderDetails | None],
        scanner: Callable[[], ScannerDetails | None],
        problems: RecentProblems,
        link: Callable[[], LinkState] | None = None,
        extra: Callable[[], Mapping[str, object]] | None = None,
    ) -> None:
        self._runtime = runtime
        self._state = state
        self._queue = queue
        self._reader = reader
        self._scanner = scanner
        self._problems = problems
        self.link = link
        self._extra = extra

    async def __call__(self) -> dict[str, object]:
        state = await self._state.build()
        devices = state["devices"]
        assert isinstance(devices, dict)
        config = self._runtime.config
        try:
            entries = await self._queue()
        except Exception as exc:  # the journal not open, a failing disk: say so, go on
            entries = []
            queue_error: str | None = redact(str(exc))
        else:
            queue_error = None
        answer: dict[str, object] = {
            "ts": rfc3339(time.time()),
            "boot_id": self._runtime.boot_id,
            "uptime_s": state["uptime_s"],
            "config_sha256": state["config_sha256"],
            "versions": versions(),
            "devices": {
                "card_reader": reader_details(self._reader()),
                "qr_scanner": scanner_details(self._scanner(), config.qr_scanner.kind),
                "audio": devices.get("audio"),
            },
            "queue": {
                "summary": state["saf"],
                "oldest": entries[:QUEUE_ENTRIES_SHOWN],
                "error": queue_error,
            },
            "ledger": state["ledger"],
            "links": {"monitoring": self.link().to_json() if self.link else None},
            "components": {
                name: status.to_json() for name, status in self._runtime.component_states().items()
            },
            "last_errors": self._problems.recent(),
        }
        if self._extra is not None:
            answer.update(self._extra())
        return answer
