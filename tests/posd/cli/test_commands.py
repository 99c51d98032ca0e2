"""The command line itself: the commands operations.md names, sysexits codes for misuse."""

from __future__ import annotations

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
