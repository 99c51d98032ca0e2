"""What the USB and serial QR scanner drivers share: state, delivery of codes, rescan delays.

Scanned text is a payment token: it is handed to `on_scan` and never logged; logs say how
long a code was, at most.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Literal

__all__ = ["ScannerBase", "ScannerState"]

ScannerState = Literal["ready", "busy", "disconnected", "error"]

log = logging.getLogger(__package__)


class ScannerBase(ABC):
    """State, delivery and the rescan loop of a scanner component; subclasses implement
    `_session`."""

    name = "qr_scanner"
    kind = ""
    config_sections = ("qr_scanner",)

    def __init__(
        self,
        on_scan: Callable[[str], None],
        *,
        rescan_initial_s: float,
        rescan_max_s: float,
    ) -> None:
        if not 0 < rescan_initial_s <= rescan_max_s:
            raise ValueError("rescan delays need 0 < rescan_initial_s <= rescan_max_s")
        self._on_scan = on_scan
        self._rescan_initial_s = rescan_initial_s
        self._rescan_max_s = rescan_max_s
        self._next_delay_s = rescan_initial_s
        self.state: ScannerState = "disconnected"
        self.device: str | None = None
        """What is connected: "05e0:1200 Zebra (Symbol)" or a serial port path."""
        self.last_error: str | None = None
        self.scans = 0
        self.discarded = 0
        """Codes dropped for running past the length cap before their terminator."""
        self.on_state: Callable[[ScannerState], None] | None = None
        """Called after every change of `state` (monitoring's device events); must not raise."""

    async def run(self, started: Callable[[], None]) -> None:
        self._set_state("disconnected")
        started()
        while True:
            await self._session()
            await asyncio.sleep(self._next_delay())

    @abstractmethod
    async def _session(self) -> None:
        """Open the device, deliver its codes until it goes away, and return; a failure to
        open sets the error state and returns too, so `run` looks again after a delay."""

    def _next_delay(self) -> float:
        """Seconds before the next look for the device: doubling while it stays away."""
        delay = self._next_delay_s
        self._next_delay_s = min(delay * 2, self._rescan_max_s)
        return delay

    def _set_ready(self, device: str) -> None:
        self._next_delay_s = self._rescan_initial_s
        self.device = device
        self.last_error = None
        self._set_state("ready")
        log.info("QR scanner %s ready", device)

    def _set_disconnected(self) -> None:
        if self.state == "ready":
            log.warning("QR scanner %s went away; looking for it again", self.device)
            # Look again soon, for a quick replug; the delay doubles while it stays away.
            self._next_delay_s = self._rescan_initial_s
        self._set_state("disconnected")

    def _set_error(self, message: str) -> None:
        if message != self.last_error:
            log.warning("QR scanner: %s", message)
        self.last_error = message
        self._set_state("error")

    def _set_state(self, state: ScannerState) -> None:
        if state != self.state:
            self.state = state
            if self.on_state is not None:
                self.on_state(state)

    def _overlong(self, limit: int) -> None:
        self.discarded += 1
        log.warning("QR scanner input ran past %d characters with no terminator: dropped", limit)

    def _deliver(self, code: str) -> None:
        self.scans += 1
        log.debug("QR scanner read a code of %d characters", len(code))
        try:
            self._on_scan(code)
        except Exception:
            # A fault in the consumer must not stop the scanner; the traceback is for the
            # developer, and the log handler redacts the registered QR text in it.
            log.exception("the scan handler failed")
