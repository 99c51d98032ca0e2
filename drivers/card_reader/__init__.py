"""The card reader: an SRL/1 device (reader-link.md) on a serial port, RS-232 or USB-CDC.

Modules:
- `reader`: `CardReader`, the reader as a component (`auto` finds it, an unplugged one is looked
  for again, a dropped link is reopened) with the payment flow's `read_card` and `complete`;
  what they return (`CardRead`, `ReadFailed`, `CompleteResult`, `ReaderInfo`) and raise
  (`ReaderUnavailable`); `ping_port`, "a reader on this port, or not".
- `session`: one open port: the SRL/1 link driven over asyncio, its timer and its inbox.
- `probe`: `probe_port`, one PING told apart the way a technician needs (`posd devices`):
  busy, no permission, absent, silent, not SRL/1, or a reader.
"""

from drivers.card_reader.probe import ProbeResult, ProbeStatus, probe_port
from drivers.card_reader.reader import (
    CardDataError,
    CardRead,
    CardReader,
    CompleteResult,
    ReaderInfo,
    ReaderState,
    ReaderUnavailable,
    ReadFailed,
    card_read_from,
    ping_port,
)

__all__ = [
    "CardDataError",
    "CardRead",
    "CardReader",
    "CompleteResult",
    "ProbeResult",
    "ProbeStatus",
    "ReadFailed",
    "ReaderInfo",
    "ReaderState",
    "ReaderUnavailable",
    "card_read_from",
    "ping_port",
    "probe_port",
]
