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
        "ts",
        "boot_id",
        "connects",
        "uptime_s",
        "config_sha256",
        "ledger",
        "devices",
        "saf",
        "orders",
        "payments_today",
    }
)
# posd's additions to it: the journal's disk, the local API's listeners, and the monitoring
# link (its refused credentials).
STATE_EXTRA_KEYS = frozenset({"storage", "api", "mqtt"})
# Every key of each section (mqtt.md), by section; devices by device.
STATE_SECTION_KEYS = {
    "ledger": frozenset({"link", "last_rtt_ms", "last_error", "clock_skew_s"}),
    "saf": frozenset({"pending", "pending_amount", "oldest_age_s", "alarm"}),
    "orders": frozenset({"alerting", "missed_today", "link", "can_alert", "reason"}),
    "payments_today": frozenset({"approved", "declined", "amount"}),
}
STATE_DEVICE_KEYS = {
    "card_reader": frozenset({"state", "port", "firmware"}),
    "qr_scanner": frozenset({"state", "kind"}),
    "audio": frozenset({"state", "output"}),
}
