"""The link to the central ledger (ledger-iso8583.md): ISO 8583 over one persistent mutual-TLS
connection, signed on before any payment goes out.

Modules:
- `client`: `LedgerClient`, the link as a component (sign-on, echo, reconnect with backoff,
  sign-off) and `send`, whose errors say what the caller must do: `LedgerUnavailable` (nothing
  went out), `LedgerTimeout` and its kinds `LedgerLinkLost` and `LedgerBadResponse` (it went
  out and no valid answer came), `LedgerSecurityError` (the answer's MAC is wrong). Its
  `LedgerTls` and `LedgerTimings` are the settings it is built with; its `clock_skew_s` is
  the ledger's clock against posd's, a warning beyond `CLOCK_MAX_SKEW_S`.
"""

from posd.ledger.client import (
    CLOCK_MAX_SKEW_S,
    LedgerBadResponse,
    LedgerClient,
    LedgerError,
    LedgerLinkLost,
    LedgerSecurityError,
    LedgerTimeout,
    LedgerTimings,
    LedgerTls,
    LedgerUnavailable,
    StanSource,
)

__all__ = [
    "CLOCK_MAX_SKEW_S",
    "LedgerBadResponse",
    "LedgerClient",
    "LedgerError",
    "LedgerLinkLost",
    "LedgerSecurityError",
    "LedgerTimeout",
    "LedgerTimings",
    "LedgerTls",
    "LedgerUnavailable",
    "StanSource",
]
