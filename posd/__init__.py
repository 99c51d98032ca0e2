"""The posd daemon: config, payment flow, journal, ledger client, MQTT, local API, CLI."""

__version__ = "0.1.0"
