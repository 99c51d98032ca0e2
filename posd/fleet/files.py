"""The secret files the console is given: bearer token, broker password, operator key.

Each is judged as posd judges its own secret files, by posd.config's one definition (a small
regular file that other users cannot open; a token of visible ASCII; a UTF-8 password): a
problem is a `SecretFileError` whose message names the file and never its content.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from posd.config import FileProblem, parse_api_token, parse_password, read_secret_file

_Value = TypeVar("_Value")


class SecretFileError(ValueError):
    pass


def _read(path: Path, what: str, parse: Callable[[Path, bytes], _Value]) -> _Value:
    try:
        return parse(path, read_secret_file(path))
    except FileProblem as exc:
        raise SecretFileError(f"{what}: {exc}") from None


def read_secret(path: Path, what: str) -> bytes:
    return _read(path, what, lambda _, data: data)


def read_token(path: Path) -> str:
    """A bearer token: one line of at least 16 visible ASCII characters."""
    return _read(path, "--token-file", parse_api_token)


def read_password(path: Path) -> str:
    return _read(path, "--password-file", parse_password)


def _one_line(data: bytes) -> bytes:
    return data[:-2] if data.endswith(b"\r\n") else data.removesuffix(b"\n")


def load_operator_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key: unencrypted PEM (PKCS #8), or base64 of the raw 32 bytes."""
    data = read_secret(path, "--operator-key")
    unusable = SecretFileError(
        f"--operator-key: {path} holds no usable key, expected an unencrypted Ed25519 "
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
