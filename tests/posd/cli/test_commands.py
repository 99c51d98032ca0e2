"""The command line itself: the commands operations.md names, sysexits codes for misuse."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys

import pytest

from posd import __version__
from posd.cli import build_parser, main

# operations.md's commands that have landed.
COMMANDS = ["run", "demo", "config", "devices", "chime", "status", "saf", "enroll", "ledger-sim"]


def test_help_lists_every_landed_command() -> None:
    text = build_parser().format_help()
    for command in COMMANDS:
        assert f"    {command}" in text, command


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"posd {__version__}"


@pytest.mark.parametrize(
    "argv",
    [[], ["bogus"], ["status", "--bogus"], ["config"], ["config", "frob"], ["saf", "drain"]],
)
def test_misuse_exits_64_with_a_hint(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code: int | str | None
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 64
    assert "usage: posd" in capsys.readouterr().err


def test_python_dash_m_posd_is_the_same_program() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "posd", "--help"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    assert "ledger-sim" in done.stdout


# What aiohttp's import left in its default client context, in a fresh process; argv[1]
# "daemon": imported as `posd run` imports it.
_CA_PROBE = """
import os, sys
if sys.argv[1] == "daemon":
    from posd.cli.commands import daemon_entry
    daemon_entry()
from aiohttp import connector
print(connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509"], os.environ.get("SSL_CERT_FILE"))
"""


def _ca_probe(how: str, ssl_cert_file: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_FILE"}
    if ssl_cert_file is not None:
        env["SSL_CERT_FILE"] = ssl_cert_file
    done = subprocess.run(
        [sys.executable, "-c", _CA_PROBE, how],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    return done.stdout.split()


def test_the_daemon_loads_no_system_ca_certificate_and_puts_the_variable_back() -> None:
    system_store = ssl.get_default_verify_paths().cafile
    if system_store is None or ssl.create_default_context().cert_store_stats()["x509"] == 0:
        pytest.skip("this machine has no system CA store for aiohttp to load")
    assert int(_ca_probe("plain", None)[0]) > 0
    assert _ca_probe("daemon", None) == ["0", "None"]
    assert int(_ca_probe("plain", system_store)[0]) > 0
    assert _ca_probe("daemon", system_store) == ["0", system_store]
