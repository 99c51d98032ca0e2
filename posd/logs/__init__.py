"""posd's log output and the masking of card data and secrets in anything shown outside posd.

Modules:
- `handler`: `setup_logging` (the one redacting handler on the root logger, `text` or `json`
  lines for journald), `set_level`, `RedactingFormatter` and `RedactingHandler`, and the
  process-wide secret registry: `register_secret`, `redact`.
- `redaction`: `Redactor`, the masking itself (PANs in any layout, Luhn-valid or starting with
  a card prefix: `set_card_prefixes`; track 2, QR tokens, registered secrets in their raw, hex
  and base64 forms); `luhn_valid`.
- `throttle`: `Throttle`, lines a flood could repeat let through at a bounded rate, counted.
"""

from posd.logs.handler import (
    LEVELS,
    RedactingFormatter,
    RedactingHandler,
    parse_level,
    redact,
    register_secret,
    set_card_prefixes,
    set_level,
    setup_logging,
)
from posd.logs.redaction import (
    CARD_PREFIXES,
    QR_MASK,
    SECRET_MASK,
    TRANSIENT_SECRETS_KEPT,
    Redactor,
    luhn_valid,
    redact_card_data,
)
from posd.logs.throttle import Throttle, held_note

__all__ = [
    "CARD_PREFIXES",
    "LEVELS",
    "QR_MASK",
    "SECRET_MASK",
    "TRANSIENT_SECRETS_KEPT",
    "RedactingFormatter",
    "RedactingHandler",
    "Redactor",
    "Throttle",
    "held_note",
    "luhn_valid",
    "parse_level",
    "redact",
    "redact_card_data",
    "register_secret",
    "set_card_prefixes",
    "set_level",
    "setup_logging",
]
