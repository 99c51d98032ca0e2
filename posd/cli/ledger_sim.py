"""`posd ledger-sim`: the reference ledger as a standalone server, for labs and integration tests.

    posd ledger-sim --listen 127.0.0.1:8583 --mac-key-file mac.key
    posd ledger-sim --listen 0.0.0.0:8583 --tls --cert ledger.pem --key ledger.key \\
        --client-ca terminals-ca.pem --mac-key-file mac.key --accounts accounts.json

Prints `ledger-sim listening on HOST:PORT` once serving; runs until SIGINT or SIGTERM.
Each message is logged by MTI, STAN, masked account, amount and response code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from posd.logs import register_secret, setup_logging
from posd.sim import AccountBook, AccountsFileError, LedgerSimulator, server_ssl_context
from protocols.ledger_mac import MacKeyError, parse_mac_key_hex


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posd ledger-sim",
        description="The reference 서로e음 ledger (ISO 8583 over TCP or mutual TLS).",
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options, for posd.cli.commands to put on its `ledger-sim` subcommand."""
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8583",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:8583; port 0 picks a free one)",
    )
    parser.add_argument(
        "--tls", action="store_true", help="mutual TLS (needs --cert, --key, --client-ca)"
    )
    parser.add_argument("--cert", type=Path, help="the ledger's certificate (PEM)")
    parser.add_argument("--key", type=Path, help="the ledger's private key (PEM)")
    parser.add_argument("--client-ca", type=Path, help="CA that signed the terminals' certificates")
    parser.add_argument(
        "--mac-key-file", type=Path, required=True, help="the terminals' MAC key: 64 hex characters"
    )
    parser.add_argument(
        "--accounts", type=Path, help="accounts JSON (default: the built-in demo accounts)"
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )


def _listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8583")
    return host.strip("[]"), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run with parsed arguments (from `build_parser` or posd.cli.commands' subparser)."""
    try:
        host, port = _listen_address(args.listen)
    except ValueError as exc:
        print(f"posd ledger-sim: {exc}", file=sys.stderr)
        return os.EX_USAGE
    if args.tls and not (args.cert and args.key and args.client_ca):
        print(
            "posd ledger-sim: --tls needs --cert, --key and --client-ca (mutual TLS)",
            file=sys.stderr,
        )
        return os.EX_USAGE
    try:
        mac_key = parse_mac_key_hex(args.mac_key_file.read_text(encoding="ascii"))
    except OSError as exc:
        print(f"posd ledger-sim: cannot read {args.mac_key_file}: {exc.strerror}", file=sys.stderr)
        return os.EX_NOINPUT
    except (UnicodeDecodeError, MacKeyError) as exc:
        print(f"posd ledger-sim: {args.mac_key_file}: {exc}", file=sys.stderr)
        return os.EX_CONFIG
    try:
        accounts = AccountBook.from_file(args.accounts) if args.accounts else AccountBook.default()
    except AccountsFileError as exc:
        print(f"posd ledger-sim: {exc}", file=sys.stderr)
        return os.EX_CONFIG
    context = None
    if args.tls:
        try:
            context = server_ssl_context(args.cert, args.key, args.client_ca)
        except (OSError, ssl.SSLError) as exc:
            print(f"posd ledger-sim: TLS files unusable: {exc}", file=sys.stderr)
            return os.EX_CONFIG
    # Logging is set up only once serving: a refused command line leaves the process as it was.
    setup_logging(args.log_level, "text")
    register_secret(mac_key.hex())
    simulator = LedgerSimulator(
        mac_key=mac_key, accounts=accounts, ssl_context=context, host=host, port=port
    )
    try:
        asyncio.run(_serve(simulator, host))
    except OSError as exc:
        print(f"posd ledger-sim: cannot listen on {args.listen}: {exc.strerror}", file=sys.stderr)
        return os.EX_UNAVAILABLE
    return 0


async def _serve(simulator: LedgerSimulator, host: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with simulator:
        print(f"ledger-sim listening on {host}:{simulator.port}", flush=True)
        await stop.wait()
    with contextlib.suppress(ValueError):
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
