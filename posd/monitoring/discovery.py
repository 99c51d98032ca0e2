"""Home Assistant MQTT discovery (optional, `mqtt.homeassistant_discovery`): one device-based
discovery config per box, retained on `{prefix}/device/posd_{terminal}/config`.

Its components read the box's own retained state (`…/state`) with value templates and go
unavailable with `…/availability`: the card reader's state, the ledger link, the SAF queue,
the orders alerting and missed today, and whether the box can alert an order. Home Assistant
needs nothing else from posd; the config is republished on every connect, like the state.
Turning the option off leaves a config published earlier in place: remove it with an empty
retained message on the same topic.
"""

from __future__ import annotations

import re

from posd import __version__
from posd.config import Config

_NOT_ID = re.compile(r"[^a-zA-Z0-9_-]")


def discovery_object_id(terminal_id: str) -> str:
    """Home Assistant's object ids take [a-zA-Z0-9_-] only."""
    return "posd_" + _NOT_ID.sub("_", terminal_id)


def discovery_topic(config: Config) -> str:
    object_id = discovery_object_id(config.terminal.id)
    return f"{config.mqtt.homeassistant_prefix}/device/{object_id}/config"


def discovery_payload(config: Config) -> dict[str, object]:
    base = config.monitoring_topic
    device_id = discovery_object_id(config.terminal.id)

    def sensor(name: str, template: str, **more: object) -> dict[str, object]:
        return {"p": "sensor", "name": name, "value_template": template, **more}

    def binary(name: str, condition: str, **more: object) -> dict[str, object]:
        template = "{{ 'ON' if " + condition + " else 'OFF' }}"
        return {"p": "binary_sensor", "name": name, "value_template": template, **more}

    components = {
        "card_reader": sensor("Card reader", "{{ value_json.devices.card_reader.state }}"),
        "ledger_link": binary(
            "Ledger link", "value_json.ledger.link == 'up'", device_class="connectivity"
        ),
        "saf_pending": sensor(
            "SAF pending", "{{ value_json.saf.pending }}", state_class="measurement"
        ),
        "orders_alerting": sensor(
            "Orders alerting", "{{ value_json.orders.alerting }}", state_class="measurement"
        ),
        "orders_missed_today": sensor(
            "Orders missed today", "{{ value_json.orders.missed_today }}"
        ),
        "can_alert": binary("Can alert orders", "value_json.orders.can_alert"),
    }
    for key, component in components.items():
        component["unique_id"] = f"{device_id}_{key}"
    return {
        "dev": {
            "ids": [device_id],
            "name": f"posd {config.terminal.id}",
            "mf": "서로e음",
            "mdl": "posd POS box",
            "sw": __version__,
            "sn": config.terminal.id,
        },
        "o": {"name": "posd", "sw": __version__},
        "availability_topic": f"{base}/availability",
        "payload_available": "online",
        "payload_not_available": "offline",
        "state_topic": f"{base}/state",
        "qos": 1,
        "cmps": components,
    }
