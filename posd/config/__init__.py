"""posd's configuration: the TOML file of operations.md, loaded into frozen typed sections.

`load_config(path)` reads, validates and returns a `Config`, or raises `ConfigError` listing
every problem at once as `FILE:LINE: key.path: what is wrong, expected what`. Which file a
command reads is decided here once (`config_path`: `-c FILE`, else $POSD_CONFIG, else
DEFAULT_CONFIG). Secrets live in the files the config names and are read on demand.

Modules:
- `load`: `load_config`, `parse_config`; `config_path`, which file a command reads;
  `example_text`, the packaged example.
- `model`: `Config` and its frozen sections (`TerminalConfig`, `LedgerConfig`, ...).
- `sections`: each section built from its table, every value checked.
- `secrets`: `read_mac_key`, `read_api_token`, `read_mqtt_password`, read on demand.
- `errors`: `ConfigProblem` (one problem, with its file and line), `ConfigError`,
  `ConfigFileError`.
- `fields`: `Table`, the typed reader of one TOML table that collects problems.
- `values`: the value checks (`ans`, baud rates, ports, hosts, topics, keys).
- `files`: checks of the files a config names (secrets, certificates, the state dir).
- `lines`: where each key sits in the file, for the problem lines.
- `example.toml`: the complete, commented example (`posd config example`).
"""

from posd.config.errors import ConfigError, ConfigFileError, ConfigProblem
from posd.config.load import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    config_path,
    example_text,
    load_config,
    named_config,
    parse_config,
)
from posd.config.model import (
    ApiConfig,
    AudioConfig,
    AudioOutput,
    CardReaderConfig,
    Config,
    LedgerConfig,
    LogFormat,
    LoggingConfig,
    LogLevel,
    MqttConfig,
    MqttProtocol,
    OfflineConfig,
    OrdersConfig,
    QrConfig,
    QrScannerConfig,
    QrScannerKind,
    StorageConfig,
    TerminalConfig,
)
from posd.config.secrets import read_api_token, read_mac_key, read_mqtt_password
from posd.config.values import ans

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "ApiConfig",
    "AudioConfig",
    "AudioOutput",
    "CardReaderConfig",
    "Config",
    "ConfigError",
    "ConfigFileError",
    "ConfigProblem",
    "LedgerConfig",
    "LogFormat",
    "LogLevel",
    "LoggingConfig",
    "MqttConfig",
    "MqttProtocol",
    "OfflineConfig",
    "OrdersConfig",
    "QrConfig",
    "QrScannerConfig",
    "QrScannerKind",
    "StorageConfig",
    "TerminalConfig",
    "ans",
    "config_path",
    "example_text",
    "load_config",
    "named_config",
    "parse_config",
    "read_api_token",
    "read_mac_key",
    "read_mqtt_password",
]
