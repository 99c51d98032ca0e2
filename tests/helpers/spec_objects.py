"""Key sets the specs fix for posd's JSON objects, written once for every test that checks them."""

from __future__ import annotations

# local-api.md's payment object, less "card_last4" | "account_last4" (one or the other).
PAYMENT_OBJECT_KEYS = frozenset(
    {
        "payment_id",
        "state",
        "amount",
        "discount",
        "charged",
        "method",
        "entry_mode",
        "stan",
        "rrn",
        "auth_code",
        "response_code",
        "decline_reason",
        "offline",
        "created_at",
        "updated_at",
    }
)

# mqtt.md: "State payload (all keys present)"; GET /v1/status serves the same object.
STATE_OBJECT_KEYS = frozenset(
    {
        "terminal_id",
        "merchant_id",
        "version",
        "uptime_s",
        "config_sha256",
        "ledger",
        "devices",
        "saf",
        "orders",
        "payments_today",
    }
)
