"""The secret files the console is given: bearer token, broker password, operator key.

Each must be a small regular file that other users cannot open (as posd's own secret files);
a problem is a `SecretFileError` whose message names the file and never its content.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MAX_SECRET_BYTES: Final = 64 * 1024
MIN_TOKEN_CHARS: Final = 16


class SecretFileError(ValueError):
    pass


def read_secret(path: Path, what: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SecretFileError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise SecretFileError(f"{what} {path} cannot be opened ({exc.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise SecretFileError(f"{what} {path} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        if info.st_mode & 0o007:
            raise SecretFileError(
                f"{what} {path} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"run `chmod 600 {path}`"
            )
        data = handle.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise SecretFileError(f"{what} {path} is larger than {MAX_SECRET_BYTES} bytes")
    return data


def _one_line(data: bytes) -> bytes:
    return data[:-2] if data.endswith(b"\r\n") else data.removesuffix(b"\n")


def read_token(path: Path) -> str:
    """A bearer token: one line of at least MIN_TOKEN_CHARS visible ASCII characters."""
    text = _one_line(read_secret(path, "the token file"))
    expected = (
        f"expected one line of at least {MIN_TOKEN_CHARS} visible ASCII characters "
        "(e.g. from `openssl rand -hex 32`)"
    )
    if not all(0x21 <= byte <= 0x7E for byte in text) or len(text) < MIN_TOKEN_CHARS:
        raise SecretFileError(f"the token file {path} does not hold a usable token, {expected}")
    return text.decode("ascii")


def read_password(path: Path) -> str:
    try:
        text = _one_line(read_secret(path, "the password file")).decode("utf-8")
    except UnicodeDecodeError:
        raise SecretFileError(f"the password file {path} is not UTF-8 text") from None
    if not text:
        raise SecretFileError(f"the password file {path} is empty")
    return text


def load_operator_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key: unencrypted PEM (PKCS #8), or base64 of the raw 32 bytes."""
    data = read_secret(path, "the operator key file")
    unusable = SecretFileError(
        f"the operator key file {path} holds no usable key, expected an unencrypted Ed25519 "
        "private key in PEM, or base64 of its 32 bytes"
    )
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise unusable from None
        if not isinstance(key, Ed25519PrivateKey):
            raise unusable
        return key
    try:
        raw = base64.b64decode(_one_line(data).strip(), validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise unusable
    return Ed25519PrivateKey.from_private_bytes(raw)
