"""The broker fixtures of tests/helpers/mosquitto.py, for the console's tests on a live broker."""

from tests.helpers.mosquitto import mosquitto, mosquitto_factory

__all__ = ["mosquitto", "mosquitto_factory"]
