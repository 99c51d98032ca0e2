"""The journal's key file and the AES-GCM sealing of card data at rest.

The key file holds 32 random bytes. Separate subkeys are derived from it with HKDF so that
the AES key, the account-hash key and the key check value never share material.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_FILE_NAME = "journal.key"
KEY_SIZE = 32
NONCE_SIZE = 12
# Leading byte of every sealed blob, so a later format can be told apart from this one.
SEAL_FORMAT = 1


class JournalKeyError(Exception):
    """The journal key file is missing, unsafe, malformed, or does not fit the database."""


class SealError(Exception):
    """A sealed blob failed authentication: wrong key, wrong record, or tampering."""


def load_or_create_key(state_dir: Path, *, create: bool = True) -> bytes:
    """Read state_dir/journal.key, creating it (mode 0600) when absent and `create` is set."""
    path = state_dir / KEY_FILE_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        if not create:
            raise JournalKeyError(
                f"{path} is missing but the journal database already holds sealed data; "
                "restore the key file from backup, or move journal.db away to start empty"
            ) from None
        return _create_key(path)
    except OSError as exc:
        raise JournalKeyError(
            f"cannot open {path}: {exc.strerror}; it must be a regular file"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise JournalKeyError(f"{path} is not a regular file")
        if info.st_mode & 0o077:
            raise JournalKeyError(
                f"{path} has mode {stat.S_IMODE(info.st_mode):04o}; it must not be readable by "
                f"group or others: run `chmod 600 {path}`"
            )
        key = os.read(fd, KEY_SIZE + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_SIZE:
        raise JournalKeyError(
            f"{path} holds {len(key)}{'+' if len(key) > KEY_SIZE else ''} bytes, expected exactly "
            f"{KEY_SIZE}; it is damaged or not a posd journal key"
        )
    return key


def _create_key(path: Path) -> bytes:
    key = os.urandom(KEY_SIZE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    # The key must survive a power cut together with the first record sealed under it.
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return key


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key)


class JournalCipher:
    """Seals records with AES-256-GCM and hashes account numbers with a keyed HMAC."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise JournalKeyError(f"journal key must be {KEY_SIZE} bytes, got {len(key)}")
        self._aead = AESGCM(_derive(key, b"posd journal v1 aes-gcm"))
        self._hash_key = _derive(key, b"posd journal v1 account hmac")
        self.key_check = _derive(key, b"posd journal v1 key check")[:16].hex()

    def __repr__(self) -> str:
        return f"JournalCipher(key_check={self.key_check!r})"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return bytes([SEAL_FORMAT]) + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < 1 + NONCE_SIZE + 16 or blob[0] != SEAL_FORMAT:
            raise SealError("sealed record is truncated or of an unknown format")
        nonce = blob[1 : 1 + NONCE_SIZE]
        try:
            return self._aead.decrypt(nonce, blob[1 + NONCE_SIZE :], aad)
        except InvalidTag:
            raise SealError("sealed record does not authenticate under this journal key") from None

    def account_hash(self, account: str) -> str:
        """A stable pseudonym for a PAN or account number, for per-account offline limits."""
        return hmac.new(self._hash_key, account.encode("ascii"), hashlib.sha256).hexdigest()
