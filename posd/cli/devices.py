"""`posd devices`: the field technician's first look at what is plugged in.

Lists the serial ports (with their kernel drivers and /dev/serial/by-id names) and USB devices,
marks what looks like a card reader or a QR scanner, PINGs each serial candidate with SRL/1,
says whether the reader and scanner the config names are there, and prints what to do: the
config lines for what it found, the udev line pinning each device, and every permission problem
with the command that fixes it.

The work is in `device_survey` (gathering), `device_checks` (against the config),
`device_advice` (what to do) and `device_report` (text and JSON).

Exit codes (sysexits): 0 it ran, 69 a device the config needs is missing, 66 the config
named cannot be read, 78 the config is not valid. Problems found are printed, not exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import replace

from posd.cli.device_advice import advise
from posd.cli.device_report import render_text, report_json
from posd.cli.device_survey import DEFAULT_TIMEOUT_S, Host, survey
from posd.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    Config,
    ConfigError,
    ConfigFileError,
    config_path,
    load_config,
    named_config,
)

__all__ = ["add_arguments", "devices", "run"]

MAX_TIMEOUT_S = 30.0


# -- the command -------------------------------------------------------------------------


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(
            f"{text} is out of range, expected more than 0 and at most {MAX_TIMEOUT_S:g} s"
        )
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        help=f"config whose reader and scanner to look for (default: ${CONFIG_ENV} or "
        f"{DEFAULT_CONFIG}, when it exists)",
    )
    parser.add_argument("--json", action="store_true", help="print the raw data as JSON")
    parser.add_argument(
        "--no-ping", action="store_true", help="list only; do not PING serial ports"
    )
    parser.add_argument(
        "--timeout",
        type=_timeout,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for each port's PONG (default {DEFAULT_TIMEOUT_S:g})",
    )


def _load(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[Config | None, str, int]:
    """The config (or None), a note on it, and the exit code its problems earn (0: none)."""
    path = config_path(args.config, env)
    if named_config(args.config, env) is None and not os.path.exists(path):
        return None, f"no config at {path}; only listing", os.EX_OK
    try:
        return load_config(path), "", os.EX_OK
    except ConfigFileError as exc:
        return None, f"cannot read it: {exc}", os.EX_NOINPUT
    except ConfigError as exc:
        count = len(exc.problems)
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        note = (
            f"{path} has {count} problem{'s' if count != 1 else ''} (listed above; "
            f"`posd config check {path}`): configured devices not checked"
        )
        return None, note, os.EX_CONFIG


async def devices(
    args: argparse.Namespace,
    *,
    host: Host | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """`posd devices` on a running loop: prints the report, returns the exit code."""
    config, note, config_exit = _load(args, os.environ if env is None else env)
    host = host or Host()
    report = await survey(host, config, ping=not args.no_ping, timeout_s=args.timeout)
    if note:
        report = replace(report, config_note=note)
    advice = advise(report, host)
    if args.json:
        print(json.dumps(report_json(report, advice), indent=2, ensure_ascii=False))
    else:
        print(render_text(report, advice))
    if config_exit != os.EX_OK:
        print(f"posd devices: {note}", file=sys.stderr)
        return config_exit
    if report.missing:
        for check in report.missing:
            print(f"posd devices: {check.device} missing: {check.detail}", file=sys.stderr)
        return os.EX_UNAVAILABLE
    return os.EX_OK


def run(args: argparse.Namespace) -> int:
    """`posd devices`: 0 when it ran, 69 when a configured device is missing, 66/78 when
    the config cannot be used (the devices are listed all the same)."""
    return asyncio.run(devices(args))
