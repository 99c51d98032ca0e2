"""posd, the 서로e음 POS terminal daemon: payments from the shop's card reader and QR scanner
to the central ledger, durable in a journal, served to the POS app over a local API.

Its packages, each importing only those listed below it (`|`: siblings that never import each
other), as import-linter checks in `make lint`:
- `cli/`: the `posd` commands.
- `daemon/`: start-up, the one place components are built, the state dir.
- `api/`: the local HTTP API and its client.
- `payments/`: the payment engine and the store-and-forward sender.
- `journal/` | `ledger/`: the SQLite journal and queue | the ISO 8583 ledger link.
- `runtime/`: component, supervisor, Runtime context, sd_notify, the event hub.
- `config/` | `logs/`: typed config and its checks | log handler and redaction.
- `sim/`: simulated reader, scanner and reference ledger; wire protocols only, never the daemon.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
