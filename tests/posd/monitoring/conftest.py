"""The broker fixtures of tests/helpers/mosquitto.py, for the monitoring tests."""

from tests.helpers.mosquitto import mosquitto, mosquitto_factory

__all__ = ["mosquitto", "mosquitto_factory"]
