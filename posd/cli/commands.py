"""The `posd` command line: one argparse tree, sysexits exit codes. `posd fleet serve|sim` is
posd.fleet's (the console, a second program), wired here only.

Commands whose implementation has not landed are absent, not stubbed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

from posd import __version__
from posd.config import CONFIG_ENV, DEFAULT_CONFIG, config_path

CONFIG_HELP = f"config file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG})"
FLEET_COMMANDS = {
    "serve": "the operations centre's console: the fleet's page and JSON API (fleet-console.md)",
    "sim": "N simulated POS boxes on a broker, for tests, benchmarks and evaluation",
}


class _Parser(argparse.ArgumentParser):
    """argparse that exits with sysexits' EX_USAGE (64) on a usage error instead of 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(os.EX_USAGE, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def build_parser(*, daemon_only: bool = False) -> argparse.ArgumentParser:
    """The whole command line; `daemon_only`: just `posd run`, so that the daemon does not
    load the other commands' modules (the simulators of ledger-sim, devices' USB listing:
    2 MB of the daemon's RSS)."""
    parser = _Parser(
        prog="posd",
        description="POS terminal integration daemon for 서로e음 (Incheon Seo-gu local currency).",
    )
    parser.add_argument("--version", action="version", version=f"posd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run the daemon in the foreground (systemd runs this)")
    run.add_argument("-c", "--config", help=CONFIG_HELP)
    if daemon_only:
        return parser

    config = sub.add_parser("config", help="check a config file or print the example config")
    config.set_defaults(usage=config.format_usage)
    config_sub = config.add_subparsers(
        dest="config_command", metavar="ACTION", parser_class=_Parser
    )
    config_check = config_sub.add_parser(
        "check", help="validate a config file; exit 0, or 78 listing every problem"
    )
    config_check.add_argument("file", nargs="?", help=CONFIG_HELP)
    config_sub.add_parser("example", help="print a complete, commented example config")

    demo = sub.add_parser(
        "demo", help="the scripted demo shift on simulated reader, scanner and reference ledger"
    )
    demo.add_argument(
        "--interactive", action="store_true", help="keep running with the API open after the shift"
    )

    devices = sub.add_parser(
        "devices", help="list serial ports and USB devices; PING card reader candidates with SRL/1"
    )
    from posd.cli.devices import add_arguments as add_devices_arguments

    add_devices_arguments(devices)

    check = sub.add_parser(
        "check",
        help='the "ready to leave" check: one line per item, green or red; exit 0 if all green',
    )
    from posd.cli.check import add_arguments as add_check_arguments

    add_check_arguments(check)

    chime = sub.add_parser(
        "chime", help="play the order chime on the configured output, or write it to a WAV file"
    )
    from posd.cli.chime import add_arguments as add_chime_arguments

    add_chime_arguments(chime, CONFIG_HELP)

    status = sub.add_parser("status", help="ask the running daemon for its state and print it")
    status.add_argument("-c", "--config", help=CONFIG_HELP)
    status.add_argument("--json", action="store_true", help="print the raw state object")

    saf = sub.add_parser("saf", help="list the store-and-forward queue (masked); `saf flush`")
    saf.add_argument("-c", "--config", help=CONFIG_HELP)
    saf.add_argument(
        "action", nargs="?", choices=["flush"], help="flush: ask the daemon to forward now"
    )

    enroll = sub.add_parser(
        "enroll", help="make the terminal's private key (0600) and a CSR for the ledger's CA"
    )
    from posd.cli.enroll import add_arguments as add_enroll_arguments

    add_enroll_arguments(enroll)

    ledger_sim = sub.add_parser(
        "ledger-sim", help="the reference ledger as a standalone server (labs, integration tests)"
    )
    from posd.cli.ledger_sim import add_arguments as add_ledger_sim_arguments

    add_ledger_sim_arguments(ledger_sim)

    fleet = sub.add_parser(
        "fleet", help="the operations centre's console and a simulated fleet (not on a POS box)"
    )
    # Its options are posd.fleet's, parsed only when a fleet command runs: building them here
    # would import the console (aiohttp and all) for every posd command.
    fleet.add_argument(
        "fleet_command", choices=FLEET_COMMANDS, metavar="ACTION",
        help="serve: the console (page and JSON API); sim N: N simulated boxes on a broker. "
        "`posd fleet ACTION --help` lists its options",
    )  # fmt: skip
    fleet.add_argument("fleet_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    admin = sub.add_parser(
        "admin", help="operations centre: an operator key pair, a signed command, sign-and-send"
    )
    from posd.cli.admin import add_arguments as add_admin_arguments

    add_admin_arguments(admin, _Parser)

    return parser


def fleet_command(action: str, argv: Sequence[str]) -> int:
    """`posd fleet serve|sim …`: posd.fleet's own options and run()."""
    from posd import fleet

    parser = _Parser(prog=f"posd fleet {action}", description=FLEET_COMMANDS[action])
    if action == "serve":
        fleet.add_arguments(parser)
        return fleet.run(parser.parse_args(argv), fleet.MqttFleetLink.from_options)
    fleet.add_sim_arguments(parser)
    return fleet.run_sim(parser.parse_args(argv))


@contextlib.contextmanager
def _no_default_ca_store() -> Iterator[None]:
    """OpenSSL's default CA file is empty while the daemon's modules load.

    aiohttp builds two client SSL contexts when it is imported, each loading the system's CA
    store (some 140 certificates: 2 MB of the daemon's RSS). The daemon makes no HTTPS
    request and trusts only the CAs its config names (ledger.ca_file, mqtt.ca_file), so it
    needs none of them. The variable is put back after: nothing else reads it at import."""
    saved = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = os.devnull
    try:
        yield
    finally:
        if saved is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = saved


def daemon_entry() -> Callable[[str], int]:
    """`run_daemon`, its modules loaded as `posd run` loads them."""
    with _no_default_ca_store():
        from posd.daemon import run_daemon
    return run_daemon


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(daemon_only=words[:1] == ["run"])
    args = parser.parse_args(words)
    if args.command is None:
        parser.print_help(sys.stderr)
        return os.EX_USAGE
    if args.command == "run":
        return daemon_entry()(config_path(args.config))
    if args.command == "config":
        from posd.cli import config as config_cli

        if args.config_command == "check":
            return config_cli.check(config_path(args.file))
        if args.config_command == "example":
            return config_cli.example()
        print(args.usage(), end="", file=sys.stderr)
        print("posd config: say `check [FILE]` or `example`", file=sys.stderr)
    if args.command == "demo":
        from posd.cli import demo as demo

        return demo.main(["--interactive"] if args.interactive else [])
    if args.command == "ledger-sim":
        from posd.cli import ledger_sim as ledger_sim_cli

        return ledger_sim_cli.run(args)
    if args.command == "devices":
        from posd.cli import devices as devices_cli

        return devices_cli.run(args)
    if args.command == "check":
        from posd.cli import check as check_cli

        return check_cli.run(args)
    if args.command in ("status", "saf"):
        from posd.cli import status as status_cli

        path = config_path(args.config)
        if args.command == "status":
            return status_cli.status(path, args.json)
        return status_cli.saf(path, args.action == "flush")
    if args.command == "chime":
        from posd.cli import chime as chime_cli

        if args.to is not None:
            return chime_cli.write(args.to, args.loud)
        return chime_cli.play(config_path(args.config), args.loud)
    if args.command == "fleet":
        return fleet_command(args.fleet_command, args.fleet_args)
    if args.command == "admin":
        from posd.cli import admin as admin_cli

        return admin_cli.run(args)
    if args.command == "enroll":
        from posd.cli.enroll import enroll

        return enroll(args)
    return os.EX_USAGE
