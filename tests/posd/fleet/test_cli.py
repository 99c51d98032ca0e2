"""`posd fleet serve`'s command line, its refusals, and serve() with a broker link fed by hand."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest

from posd.fleet.cli import (
    EX_CONFIG,
    EX_UNAVAILABLE,
    EX_USAGE,
    ConsoleStartError,
    ServeOptions,
    add_arguments,
    options_from_args,
    run,
    serve,
)
from posd.fleet.console import Console
from posd.fleet.web import ConsoleServer
from tests.posd.fleet.fleetdata import state, terminal, topic

TOKEN = "f" * 32
ROOT = Path(__file__).resolve().parents[3]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="posd fleet serve", exit_on_error=False)
    add_arguments(parser)
    return parser.parse_args(argv)


def secret(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_the_defaults_of_fleet_console_md() -> None:
    args = parse("--broker", "broker.example")
    assert args.broker == ("broker.example", None)
    assert args.base_topic == "posd"
    assert args.listen == ("127.0.0.1", 8790)
    options = options_from_args(args)
    assert (options.broker_host, options.broker_port, options.token) == (
        "broker.example",
        1883,
        None,
    )
    assert options.operator is None and not options.tls


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("broker.example:8883", ("broker.example", 8883)),
        ("10.1.2.3", ("10.1.2.3", None)),
        ("[::1]:1884", ("::1", 1884)),
        ("::1", ("::1", None)),
    ],
)
def test_broker_addresses(text: str, parsed: tuple[str, int | None]) -> None:
    assert parse("--broker", text).broker == parsed


@pytest.mark.parametrize(
    "argv",
    [
        ["--broker", "broker.example:0"],
        ["--broker", "broker.example:http"],
        ["--broker", "user@broker.example"],
        ["--broker", "[::1"],
        ["--broker", ""],
        ["--broker", "b", "--listen", "8790"],
        ["--broker", "b", "--listen", "console.example:8790"],
        ["--broker", "b", "--listen", "127.0.0.1:99999"],
        ["--broker", "b", "--base-topic", "posd/#"],
        ["--broker", "b", "--base-topic", "posd/"],
        ["--broker", "b", "--base-topic", "$SYS"],
        [],
    ],
)
def test_a_bad_command_line_is_a_usage_error(argv: list[str]) -> None:
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        parse(*argv)


def test_listening_beyond_loopback_needs_a_token_file(tmp_path: Path) -> None:
    for listen in ("0.0.0.0:8790", "192.0.2.7:8790", "[::]:8790"):
        with pytest.raises(ConsoleStartError, match="--token-file") as refused:
            options_from_args(parse("--broker", "b", "--listen", listen))
        assert refused.value.exit_code == EX_USAGE
    token_file = secret(tmp_path / "token", TOKEN + "\n")
    options = options_from_args(
        parse("--broker", "b", "--listen", "0.0.0.0:8790", "--token-file", str(token_file))
    )
    assert (options.listen_host, options.token) == ("0.0.0.0", TOKEN)
    for loopback in ("127.0.0.2:1", "[::1]:8790", "localhost:8790"):
        assert options_from_args(parse("--broker", "b", "--listen", loopback)).token is None


def test_refusals_name_the_option_and_the_fix(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cases = [
        (["--tls-cert", str(ca)], "--tls-cert and --tls-key go together", EX_USAGE),
        (["--tls-cert", str(ca), "--tls-key", str(ca)], "needs --tls-ca", EX_USAGE),
        (["--password-file", str(ca)], "needs --username", EX_USAGE),
        (["--tls-ca", str(tmp_path / "none.pem")], "not a readable file", EX_CONFIG),
        (["--token-file", str(secret(tmp_path / "t1", TOKEN, 0o644))], "open to other", EX_CONFIG),
        (["--token-file", str(secret(tmp_path / "t2", "short"))], "at least 16", EX_CONFIG),
        (["--token-file", str(secret(tmp_path / "t3", "a b" * 10))], "spaces", EX_CONFIG),
        (["--operator-key", str(tmp_path / "none")], "does not exist", EX_CONFIG),
        (
            ["--username", "u", "--password-file", str(secret(tmp_path / "p", ""))],
            "empty",
            EX_CONFIG,
        ),
    ]
    for extra, message, code in cases:
        with pytest.raises(ConsoleStartError, match=message) as refused:
            options_from_args(parse("--broker", "b", *extra))
        assert refused.value.exit_code == code, extra


def test_tls_changes_the_default_broker_port(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    options = options_from_args(
        parse("--broker", "b", "--tls-ca", str(ca), "--username", "console",
              "--password-file", str(secret(tmp_path / "pw", "hunter2 with spaces\n")))
    )  # fmt: skip
    assert (options.tls, options.broker_port, options.password) == (
        True,
        8883,
        "hunter2 with spaces",
    )


def test_run_prints_the_refusal_and_exits_with_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(parse("--broker", "b", "--listen", "0.0.0.0:8790"), lambda options: _never())
    assert code == EX_USAGE
    assert "posd fleet serve: --listen 0.0.0.0:8790 is reachable" in capsys.readouterr().err


def _never() -> HandFedLink:
    raise AssertionError("no link is built for a refused command line")


class HandFedLink:
    """The broker side fed by the test through the entry points the MQTT wiring uses."""

    def __init__(self) -> None:
        self.console: Console | None = None
        self.ready = asyncio.Event()

    async def run(self, console: Console) -> None:
        self.console = console
        console.set_broker(True)
        now = time.time()
        for n in range(1, 4):
            tid = terminal(n)
            console.feed(topic(tid, "availability"), b"online", True, now)
            console.feed(topic(tid, "state"), state(tid, now), True, now)
        self.ready.set()
        await asyncio.Event().wait()


def options(tmp_path: Path, **changes: object) -> ServeOptions:
    args = parse("--broker", "b", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "fleet.db"))
    return dataclasses.replace(options_from_args(args), **changes)  # type: ignore[arg-type]


async def test_serve_answers_from_what_the_link_feeds(tmp_path: Path) -> None:
    link = HandFedLink()
    servers: list[ConsoleServer] = []
    task = asyncio.create_task(serve(options(tmp_path), link, started=servers.append))
    await asyncio.wait_for(link.ready.wait(), 10)
    async with aiohttp.ClientSession(base_url=servers[0].url) as http:
        async with http.get("/api/summary") as response:
            assert (await response.json())["online"] == 3
        async with http.get("/api/console") as response:
            assert (await response.json())["broker"]["up"] is True
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (tmp_path / "fleet.db").exists()


async def test_serve_refuses_an_address_in_use_and_a_foreign_db(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConsoleStartError, match="cannot listen") as refused:
            await serve(options(tmp_path, listen_port=port), HandFedLink())
        assert refused.value.exit_code == EX_UNAVAILABLE
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all, not at all" * 50)
    with pytest.raises(ConsoleStartError, match="--db") as refused:
        await serve(options(tmp_path, db=junk), HandFedLink())
    assert refused.value.exit_code == EX_CONFIG


def test_sigterm_stops_the_console_cleanly(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import argparse, asyncio, sys
        from posd.fleet.cli import add_arguments, run

        class Idle:
            async def run(self, console):
                console.set_broker(True)
                await asyncio.Event().wait()

        parser = argparse.ArgumentParser()
        add_arguments(parser)
        args = parser.parse_args(["--broker", "b", "--listen", "127.0.0.1:0",
                                  "--db", {str(tmp_path / "fleet.db")!r}])
        sys.exit(run(args, lambda options: Idle()))
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("console at http://127.0.0.1:"), line
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=20) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.stderr is not None
    assert "Traceback" not in child.stderr.read()
