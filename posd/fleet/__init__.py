"""The operations centre's console (`posd fleet serve`), a second program: never on a POS box.

It reads the fleet from the broker (mqtt.md's availability, state and events of every box),
keeps it in memory, keeps the call centre's list in a small SQLite file, and serves a page
and the JSON API of fleet-console.md. It imports protocols and posd's config and logs faces,
never the daemon.

Modules:
- payloads: the topics and payloads as the console reads them, checked, never trusted
- badinput: counting refused messages, logged rate-limited
- model: FleetModel, the fleet in memory (status, reordering, late wills, stale, deaf, events)
- calls: CallStore, the call list in SQLite on a worker thread
- commands: signing commands with the operator key, checking the box's answer
- hub: the event-stream watchers, coalesced
- console: Console, the one owner of state and the MQTT wiring's entry points
- web: the aiohttp app (page, API, SSE) and ConsoleServer
- files: the secret files (token, password, operator key)
- cli: `posd fleet serve`'s arguments, ServeOptions, FleetLink, serve() and run()
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
from posd.fleet.model import FleetModel
from posd.fleet.payloads import subscriptions
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
    "Operator",
    "SecretFileError",
    "ServeOptions",
    "add_arguments",
    "base_topic",
    "broker_address",
    "build_app",
    "check_response",
    "load_operator_key",
    "options_from_args",
    "read_password",
    "run",
    "serve",
    "subscriptions",
]
