"""The operations centre's console (`posd fleet serve`), a second program: never on a POS box.

It reads the fleet from the broker (mqtt.md's availability, state and events of every box),
keeps it in memory, keeps the call centre's list in a small SQLite file, and serves a page
and the JSON API of fleet-console.md. It imports protocols and the faces of posd.mqtt, posd.config
and posd.logs, never the daemon. `posd fleet sim` is a simulated fleet for tests, the benchmark
and anyone evaluating the console.

Modules:
- payloads: the topics and payloads as the console reads them, checked, never trusted
- badinput: counting refused messages, logged rate-limited
- model: FleetModel, the fleet in memory (status, reordering, late wills, stale, deaf, events)
- calls: CallStore, the call list in SQLite on a worker thread
- commands: signing commands with the operator key, checking the box's answer
- hub: the event-stream watchers, coalesced
- console: Console, the one owner of state and the MQTT wiring's entry points
- web: the aiohttp app (page, API, SSE) and ConsoleServer
- files: the secret files (token, password, operator key), judged by posd.config
- cli: `posd fleet serve`'s arguments, ServeOptions, FleetLink, serve() and run()
- link: MqttFleetLink, the FleetLink on posd.mqtt (snapshot, live, commands' transport)
- simbox: SimBox, one simulated box's reports, schedule and command answers (pure)
- simnet: the simulated boxes' connections, paho clients on the event loop
- sim: `posd fleet sim N` and SimFleet, the simulated fleet
- static/: the page (HTML, CSS, a little JavaScript), served from the package
"""

from posd.fleet.calls import Call, CallStore, CallStoreError
from posd.fleet.cli import (
    ConsoleStartError,
    FleetLink,
    LinkFactory,
    ServeOptions,
    add_arguments,
    base_topic,
    broker_address,
    options_from_args,
    run,
    serve,
)
from posd.fleet.commands import (
    CommandError,
    CommandTransport,
    CommandUnavailable,
    Operator,
    check_response,
)
from posd.fleet.console import Console
from posd.fleet.files import SecretFileError, load_operator_key, read_password
from posd.fleet.link import MqttFleetLink
from posd.fleet.model import FleetModel
from posd.fleet.payloads import subscriptions
from posd.fleet.sim import SimFleet
from posd.fleet.sim import add_arguments as add_sim_arguments
from posd.fleet.sim import run as run_sim
from posd.fleet.simbox import SimBox
from posd.fleet.web import ConsoleServer, build_app

__all__ = [
    "Call",
    "CallStore",
    "CallStoreError",
    "CommandError",
    "CommandTransport",
    "CommandUnavailable",
    "Console",
    "ConsoleServer",
    "ConsoleStartError",
    "FleetLink",
    "FleetModel",
    "LinkFactory",
    "MqttFleetLink",
    "Operator",
    "SecretFileError",
    "ServeOptions",
    "SimBox",
    "SimFleet",
    "add_arguments",
    "add_sim_arguments",
    "base_topic",
    "broker_address",
    "build_app",
    "check_response",
    "load_operator_key",
    "options_from_args",
    "read_password",
    "run",
    "run_sim",
    "serve",
    "subscriptions",
]
