"""`posd config check` and `posd config example`: output and sysexits exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from posd.cli import main
from posd.config import example_text
from tests.helpers.configs import write_config

POSD = Path(sys.executable).parent / "posd"


def test_check_ok_prints_one_line_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    assert main(["config", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (f"{path}: ok\n", "")


def test_check_lists_every_problem_and_exits_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, terminal={"id": "T1"}, audio={"volume": 101})
    assert main(["config", "check", str(path)]) == os.EX_CONFIG == 78
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == ""
    assert lines[0].startswith(f"{path}:2: terminal.id: ")
    assert lines[1].startswith(f"{path}:") and ": audio.volume: 101 is out of range" in lines[1]
    assert lines[2] == (
        f"2 problems in {path}: fix each line above, then run `posd config check {path}` "
        "again (`posd config example` shows every key)."
    )
    assert len(lines) == 3


def test_check_missing_or_unreadable_file_exits_66(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check", str(tmp_path / "absent.toml")]) == os.EX_NOINPUT == 66
    assert "config file not found; create one with `posd config example > FILE`" in (
        capsys.readouterr().err
    )
    assert main(["config", "check", str(tmp_path)]) == 66
    assert "is a directory" in capsys.readouterr().err


def test_check_defaults_to_posd_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path)
    monkeypatch.setenv("POSD_CONFIG", str(path))
    assert main(["config", "check"]) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"


def test_example_prints_the_packaged_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "example"]) == 0
    out, err = capsys.readouterr()
    packaged = Path(__file__).resolve().parents[3] / "posd" / "config" / "example.toml"
    assert out == example_text() == packaged.read_text(encoding="utf-8")
    assert err == ""


@pytest.mark.skipif(Path("/etc/posd/mac.key").exists(), reason="real posd files in /etc/posd")
def test_installed_command_example_then_check_names_only_the_missing_files(
    tmp_path: Path,
) -> None:
    example = subprocess.run(
        [str(POSD), "config", "example"], capture_output=True, check=True, timeout=60
    )
    path = tmp_path / "x.toml"
    path.write_bytes(example.stdout)
    check = subprocess.run(
        [str(POSD), "config", "check", str(path)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 78
    assert check.stdout == ""
    *problems, hint = check.stderr.splitlines()
    assert hint.startswith(f"4 problems in {path}")
    text = path.read_text()
    for problem, (key, file) in zip(
        problems,
        [
            ("ledger.ca_file", "/etc/posd/ledger-ca.pem"),
            ("ledger.cert_file", "/etc/posd/terminal.pem"),
            ("ledger.key_file", "/etc/posd/terminal.key"),
            ("ledger.mac_key_file", "/etc/posd/mac.key"),
        ],
        strict=True,
    ):
        line = next(
            n
            for n, row in enumerate(text.splitlines(), 1)
            if row.startswith(key.split(".")[1] + " = ")
        )
        assert problem.startswith(f"{path}:{line}: {key}: {file} does not exist; ")


def test_check_never_shows_a_secret_pasted_into_a_file_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mac_key = "9f" * 32
    password = "hunter2-broker-password"
    path = write_config(
        tmp_path,
        ledger={"mac_key_file": mac_key},
        mqtt={"enabled": True, "username": "posd", "password_file": password},
    )
    assert main(["config", "check", str(path)]) == os.EX_CONFIG
    out, err = capsys.readouterr()
    assert "ledger.mac_key_file: is not a file path" in err
    assert "mqtt.password_file: is not a file path" in err
    for shown in (out, err):
        assert mac_key[:12] not in shown and password not in shown
