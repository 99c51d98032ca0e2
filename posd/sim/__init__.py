"""Simulated peers, faithful to the specs (inconvenient parts included): the demo's and the
tests' card reader, QR scanner and reference ledger. They speak the wire protocols only and
import nothing of the daemon.

Modules:
- `card_reader`: `SimulatedCardReader`, an SRL/1 reader on a pseudo-terminal, with faults.
- `cards`: `CARDS`, the test cards, and the CARD_DATA and COMPLETE_RESULT they give.
- `qr_scanner`: `SimulatedSerialScanner`, a serial scanner on a pseudo-terminal.
- `qr_issuer`: `QrIssuer`, 서로e음 app QR codes signed with a platform key (valid or not).
- `usb_hid_backend`: `HidScannerBackend`, a pyusb backend emulating a HID keyboard scanner.
- `ledger`: `LedgerSimulator`, the reference ledger (ISO 8583 over TLS), with faults.
- `ledger_accounts`: `AccountBook`, the ledger's accounts, and the ones the demo uses.
- `pty`: `SimulatedLine`, a pseudo-terminal pair with a stable link path.
- `order_feed`: `OrderFeed`, the 배달서구 platform on the orders topic (orders, acks, statuses).
"""

from posd.sim.card_reader import SimulatedCardReader
from posd.sim.cards import CARDS
from posd.sim.ledger import LedgerSimulator, server_ssl_context
from posd.sim.ledger_accounts import GOOD_QR_ACCOUNT, AccountBook, AccountsFileError
from posd.sim.order_feed import OrderFeed
from posd.sim.qr_issuer import QrIssuer
from posd.sim.qr_scanner import SimulatedSerialScanner

__all__ = [
    "CARDS",
    "GOOD_QR_ACCOUNT",
    "AccountBook",
    "AccountsFileError",
    "LedgerSimulator",
    "OrderFeed",
    "QrIssuer",
    "SimulatedCardReader",
    "SimulatedSerialScanner",
    "server_ssl_context",
]
