"""The 서로e음 platform's side of the QR token, for `posd demo` and tests.

A throwaway platform key signs tokens the way the customer's app shows them: good ones,
and one for each way a token can fail at the counter. Put `keys` (or
`platform_keys_toml`) in posd's config so posd trusts this issuer.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols.qr_token import CLOCK_SKEW_S, MAX_LIFETIME_S, make_qr

__all__ = ["DEMO_ACCOUNT", "MERCHANT_PRESENTED_QR", "QrIssuer"]

DEMO_ACCOUNT = "9410000012345678"
# An EMVCo merchant-presented QR (a shop's static QR), which is not a customer token.
MERCHANT_PRESENTED_QR = "00020101021126280012D410000001460108SHOP00015204599953034105802KR6304"
DEFAULT_LIFETIME_S = 180


class QrIssuer:
    def __init__(
        self,
        *,
        key_id: int = 1,
        private_key: Ed25519PrivateKey | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key_id = key_id
        self._key = private_key or Ed25519PrivateKey.generate()
        self._clock = clock

    @property
    def public_key(self) -> bytes:
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def keys(self) -> dict[int, bytes]:
        """What posd's `qr.platform_keys` holds for this issuer."""
        return {self.key_id: self.public_key}

    @property
    def platform_keys_toml(self) -> str:
        """The `[qr]` config line for this issuer."""
        encoded = base64.b64encode(self.public_key).decode("ascii")
        return f'platform_keys = {{ "{self.key_id}" = "{encoded}" }}'

    def _now(self) -> int:
        return int(self._clock())

    def issue(
        self,
        account: str = DEMO_ACCOUNT,
        *,
        issued_at: int | None = None,
        lifetime_s: int = DEFAULT_LIFETIME_S,
        nonce: bytes | None = None,
        key_id: int | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> str:
        """A token with a fresh nonce; each field can be set to make a faulty one."""
        start = self._now() if issued_at is None else issued_at
        return make_qr(
            account,
            start,
            start + lifetime_s,
            os.urandom(8) if nonce is None else nonce,
            self.key_id if key_id is None else key_id,
            key or self._key,
        )

    def valid(self, account: str = DEMO_ACCOUNT) -> str:
        return self.issue(account)

    def expired(self, account: str = DEMO_ACCOUNT) -> str:
        return self.issue(account, issued_at=self._now() - DEFAULT_LIFETIME_S - 60)

    def not_yet_valid(self, account: str = DEMO_ACCOUNT) -> str:
        return self.issue(account, issued_at=self._now() + CLOCK_SKEW_S + 60)

    def too_long_lived(self, account: str = DEMO_ACCOUNT) -> str:
        return self.issue(account, lifetime_s=MAX_LIFETIME_S + 1)

    def bad_signature(self, account: str = DEMO_ACCOUNT) -> str:
        """Signed with a key that is not this issuer's, under this issuer's key id."""
        return self.issue(account, key=Ed25519PrivateKey.generate())

    def unknown_key(self, account: str = DEMO_ACCOUNT) -> str:
        return self.issue(account, key_id=(self.key_id + 1) % 256)
