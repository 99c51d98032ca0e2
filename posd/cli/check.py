"""`posd check [--sound] [--json]`: the technician's "ready to leave" check.

One line per item, green or red with what to do (yellow where it cannot be told, which is not
green either): the config, then the lines of `ready_checks.CHECKS` (posd running, card reader,
QR scanner, ledger sign-on, terminal certificate, clock, disk, the orders and monitoring MQTT
links, audio). Against the running
daemon when there is one (its status object, over the local API: a running posd holds the
reader's port), else the devices are looked at directly (a PING for the reader).

Exit codes (sysexits): 0 every line green; 69 any line red or yellow; 66 the config file is
missing; 78 it is not valid (its problems are listed, and nothing else is checked).
Colour only when stdout is a terminal and NO_COLOR is unset or empty.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from posd.api import ApiClient, ApiPermissionDenied, ApiRequestError, ApiUnavailable
from posd.cli.device_survey import Host
from posd.cli.ready_checks import CHECKS, Line, Mark, Situation
from posd.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    Config,
    ConfigError,
    ConfigFileError,
    config_path,
    load_config,
)

__all__ = ["add_arguments", "check", "render", "run", "use_color"]

STATUS_TIMEOUT_S = 5.0
_MARKS: dict[Mark, tuple[str, str]] = {
    "ok": ("ok", "\x1b[32m"),
    "fail": ("FAIL", "\x1b[1;31m"),
    "unknown": ("????", "\x1b[33m"),
}
_RESET = "\x1b[0m"
_LABEL_WIDTH = 12


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", help=f"config file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG})"
    )
    parser.add_argument(
        "--sound", action="store_true", help="play the order chime on the audio output"
    )
    parser.add_argument("--json", action="store_true", help="print the lines as JSON")


def use_color(stream: TextIO, env: Mapping[str, str]) -> bool:
    """Colour on a terminal only, and never with NO_COLOR set (no-color.org) or TERM=dumb."""
    try:
        tty = stream.isatty()
    except ValueError:  # closed
        return False
    return tty and not env.get("NO_COLOR") and env.get("TERM") != "dumb"


def render(lines: Sequence[Line], *, color: bool) -> str:
    out = []
    for line in lines:
        word, code = _MARKS[line.mark]
        mark = f"{code}{word:<4}{_RESET}" if color else f"{word:<4}"
        out.append(f"  {mark}  {line.item:<{_LABEL_WIDTH}} {line.detail}")
        if line.mark != "ok" and line.fix:
            out.append(f"  {'':4}  {'':<{_LABEL_WIDTH}} fix: {line.fix}")
    red = sum(1 for line in lines if line.mark == "fail")
    unknown = sum(1 for line in lines if line.mark == "unknown")
    if not red and not unknown:
        summary = "READY: every line is green"
    else:
        counts = [f"{red} red"] if red else []
        counts += [f"{unknown} unknown"] if unknown else []
        summary = f"NOT READY ({', '.join(counts)}): fix each line, then posd check again"
    if color:
        summary = f"{_MARKS['ok' if not (red or unknown) else 'fail'][1]}{summary}{_RESET}"
    return "\n".join([*out, summary])


async def _status(config: Config) -> tuple[dict[str, Any] | None, Line | None]:
    """The daemon's status object, or the `posd` line saying why there is none."""
    socket = config.api.socket
    try:
        async with ApiClient(socket, timeout_s=STATUS_TIMEOUT_S) as api:
            return await api.status(), None
    except ApiPermissionDenied:
        return None, Line(
            "posd",
            "unknown",
            f"no permission to ask it on {socket}",
            "run posd check as root (sudo), or as a member of group posd",
        )
    except ApiUnavailable:
        return None, Line(
            "posd",
            "fail",
            f"not running (nothing answers on {socket})",
            "systemctl start posd; if it stops again: journalctl -u posd -e",
        )
    except (TimeoutError, ApiRequestError) as exc:
        why = "does not answer in time" if isinstance(exc, TimeoutError) else exc.message
        return None, Line(
            "posd",
            "fail",
            f"{why} on {socket}",
            "journalctl -u posd -e; systemctl restart posd",
        )


async def check(
    path: str, *, sound: bool = False, host: Host | None = None
) -> tuple[list[Line], int]:
    """Every line, and the exit code they earn."""
    try:
        config = load_config(path)
    except ConfigFileError as exc:
        # The message says what to do.
        return [Line("config", "fail", str(exc))], os.EX_NOINPUT
    except ConfigError as exc:
        count = len(exc.problems)
        lines = [
            Line(
                "config",
                "fail",
                f"{count} problem{'s' if count != 1 else ''}, the first: {exc.problems[0]}",
                f"posd config check {path}, fix each line it prints; nothing else was checked",
            )
        ]
        return lines, os.EX_CONFIG
    status, no_status = await _status(config)
    situation = Situation(config, status, no_status, host or Host(), sound)
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(item(situation)) for item in CHECKS]
    lines = [Line("config", "ok", f"{path} is valid"), *(t.result() for t in tasks)]
    ready = all(line.mark == "ok" for line in lines)
    return lines, os.EX_OK if ready else os.EX_UNAVAILABLE


def _json(lines: Sequence[Line], path: str, code: int) -> str:
    data = {
        "config": path,
        "ready": code == os.EX_OK,
        "checks": [
            {"item": line.item, "state": line.mark, "detail": line.detail, "fix": line.fix}
            for line in lines
        ],
    }
    return json.dumps(data, indent=2, ensure_ascii=False)


async def main(
    args: argparse.Namespace,
    *,
    host: Host | None = None,
    env: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
) -> int:
    env = os.environ if env is None else env
    out = sys.stdout if stdout is None else stdout
    path = config_path(args.config, env)
    lines, code = await check(path, sound=args.sound, host=host)
    if args.json:
        print(_json(lines, path, code), file=out)
    else:
        print(f"posd check: {path}", file=out)
        print(render(lines, color=use_color(out, env)), file=out)
    return code


def run(args: argparse.Namespace) -> int:
    return asyncio.run(main(args))
