"""The reference ledger's accounts: cards and QR accounts with balances, expiry and blocks.

The default book holds one account per decline the demo and the tests need. An accounts file
(JSON) replaces it:

    {"accounts": [{"number": "9410000000000001", "kind": "card", "balance": 1000000,
                   "expiry": "3012", "blocked": false, "limit": 2000000}]}

`kind` is "card" (read by the card reader) or "qr" (a 16-digit 서로e음 app account);
`expiry` (YYMM) is for cards; `limit` is the largest single payment (61 above it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from protocols.emv import mask_pan

AccountKind = Literal["card", "qr"]
DEFAULT_LIMIT: Final = 2_000_000


class AccountsFileError(ValueError):
    """An accounts file that cannot be used; the message names the entry and the key."""


@dataclass
class Account:
    number: str
    kind: AccountKind
    balance: int
    expiry: str | None = None  # YYMM, cards only
    blocked: bool = False
    limit: int = DEFAULT_LIMIT

    def __repr__(self) -> str:
        return (
            f"Account({mask_pan(self.number)}, {self.kind}, balance={self.balance}, "
            f"expiry={self.expiry}, blocked={self.blocked})"
        )

    def expired(self, yymm: str) -> bool:
        """Expired when the current month (`yymm`) is after the card's expiry month."""
        return self.expiry is not None and yymm > self.expiry


# The default book: numbers the simulated reader's cards and the QR issuer use.
GOOD_CARD: Final = "9410000000000001"
POOR_CARD: Final = "9410000000000002"  # 5,000 won: larger payments get 51
EXPIRED_CARD: Final = "9410000000000003"
BLOCKED_CARD: Final = "9410000000000004"
LOW_LIMIT_CARD: Final = "9410000000000005"  # single payments over 10,000 won get 61
GOOD_QR_ACCOUNT: Final = "9410100000000001"
DEMO_QR_ACCOUNT: Final = "9410000012345678"  # posd.sim.qr_issuer's default account
POOR_QR_ACCOUNT: Final = "9410100000000002"


def default_accounts() -> list[Account]:
    return [
        Account(GOOD_CARD, "card", 1_000_000, "3012"),
        Account(POOR_CARD, "card", 5_000, "3012"),
        Account(EXPIRED_CARD, "card", 1_000_000, "2001"),
        Account(BLOCKED_CARD, "card", 1_000_000, "3012", blocked=True),
        Account(LOW_LIMIT_CARD, "card", 1_000_000, "3012", limit=10_000),
        Account(GOOD_QR_ACCOUNT, "qr", 1_000_000),
        Account(DEMO_QR_ACCOUNT, "qr", 1_000_000),
        Account(POOR_QR_ACCOUNT, "qr", 3_000),
    ]


class AccountBook:
    """Accounts by number."""

    def __init__(self, accounts: Iterable[Account]) -> None:
        self._accounts: dict[str, Account] = {}
        for account in accounts:
            if account.number in self._accounts:
                raise AccountsFileError(f"account {mask_pan(account.number)} listed twice")
            self._accounts[account.number] = account

    def get(self, number: str | None) -> Account | None:
        return None if number is None else self._accounts.get(number)

    def __iter__(self) -> Iterator[Account]:
        return iter(self._accounts.values())

    def __len__(self) -> int:
        return len(self._accounts)

    @classmethod
    def default(cls) -> AccountBook:
        return cls(default_accounts())

    @classmethod
    def from_file(cls, path: Path) -> AccountBook:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise AccountsFileError(f"{path}: cannot read: {exc.strerror}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AccountsFileError(f"{path}: not UTF-8 JSON: {exc}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("accounts"), list):
            raise AccountsFileError(f'{path}: expected {{"accounts": [...]}}')
        return cls(_account(path, i, entry) for i, entry in enumerate(raw["accounts"]))


def _account(path: Path, index: int, entry: object) -> Account:
    where = f"{path}: accounts[{index}]"
    if not isinstance(entry, Mapping):
        raise AccountsFileError(f"{where}: must be an object")
    unknown = set(entry) - {"number", "kind", "balance", "expiry", "blocked", "limit"}
    if unknown:
        raise AccountsFileError(f"{where}: unknown keys {sorted(unknown)}")
    number = entry.get("number")
    if not isinstance(number, str) or not number.isdigit() or not 8 <= len(number) <= 19:
        raise AccountsFileError(f"{where}.number: must be a string of 8 to 19 digits")
    kind = entry.get("kind", "card")
    if kind not in ("card", "qr"):
        raise AccountsFileError(f"{where}.kind: must be card or qr")
    if kind == "qr" and len(number) != 16:
        raise AccountsFileError(f"{where}.number: a QR account has 16 digits")
    balance = entry.get("balance")
    if not isinstance(balance, int) or isinstance(balance, bool):
        raise AccountsFileError(f"{where}.balance: must be an integer (won)")
    expiry = entry.get("expiry")
    if expiry is not None and (
        not isinstance(expiry, str)
        or len(expiry) != 4
        or not expiry.isdigit()
        or not 1 <= int(expiry[2:]) <= 12
    ):
        raise AccountsFileError(f"{where}.expiry: must be YYMM")
    blocked = entry.get("blocked", False)
    if not isinstance(blocked, bool):
        raise AccountsFileError(f"{where}.blocked: must be true or false")
    limit = entry.get("limit", DEFAULT_LIMIT)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        raise AccountsFileError(f"{where}.limit: must be a positive integer (won)")
    return Account(number, kind, balance, expiry, blocked, limit)
