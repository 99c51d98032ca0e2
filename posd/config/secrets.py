"""The secrets a config names, read on demand: the ledger MAC key, the API token, the broker
password. A problem with the file is reported as the config key's problem.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from posd.config.errors import ConfigFileError
from posd.config.files import (
    FileProblem,
    parse_api_token,
    parse_mac_key,
    parse_password,
    read_secret_file,
)
from posd.config.model import Config

_Secret = TypeVar("_Secret", bytes, str)


def read_mac_key(config: Config) -> bytes:
    """The 32-byte ledger MAC key. Register it with the log redaction before anything else."""
    return _read_secret(config, config.ledger.mac_key_file, parse_mac_key, "ledger.mac_key_file")


def read_api_token(config: Config) -> str | None:
    """The local API's bearer token, or None when no token file is configured."""
    path = config.api.token_file
    if path is None:
        return None
    return _read_secret(config, path, parse_api_token, "api.token_file")


def read_mqtt_password(config: Config) -> str | None:
    """The broker password, or None when no password file is configured."""
    path = config.mqtt.password_file
    if path is None:
        return None
    return _read_secret(config, path, parse_password, "mqtt.password_file")


def _read_secret(
    config: Config, path: Path, parse: Callable[[Path, bytes], _Secret], key: str
) -> _Secret:
    """A secret file's parsed value; a problem with the file is the config key's problem."""
    try:
        return parse(path, read_secret_file(path))
    except FileProblem as exc:
        raise ConfigFileError(config.source, str(exc), key) from None
