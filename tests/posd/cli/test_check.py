"""`posd check`: against the whole daemon in-process (reference ledger over mutual TLS, the
simulated reader and scanner on ptys, `aplay -D null`), and with no daemon, PINGing the
simulated reader itself; each line's judgement on the status objects and files it reads."""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from posd.cli import check as check_cli
from posd.cli.commands import build_parser
from posd.cli.device_survey import Host
from posd.cli.ready_checks import (
    Line,
    Situation,
    check_audio,
    check_certificate,
    check_clock,
    check_disk,
    check_monitoring_link,
    check_orders_link,
)
from posd.config import Config, load_config
from posd.sim import SimulatedCardReader, SimulatedSerialScanner
from tests.helpers.configs import write_config, write_tls_files
from tests.helpers.daemon import running_daemon

ALSA_NULL = {"output": "alsa", "device": "null"}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="posd check")
    check_cli.add_arguments(parser)
    return parser.parse_args(argv)


def no_host(tmp_path: Path) -> Host:
    """Nothing listed on this machine's ports, no USB: only what the config names is looked at."""
    return Host(
        serial_ports=list,
        sysfs=tmp_path / "no-sys",
        dev=tmp_path / "no-dev",
        usb_backend=lambda: None,
    )


async def run_check(*argv: str, host: Host | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = await check_cli.main(parse(*argv), host=host, env={}, stdout=out)
    return code, out.getvalue()


def marks(text: str) -> dict[str, str]:
    """item -> mark, from the printed lines (`  MARK  ITEM         detail`)."""
    return {
        line[8:20].strip(): line[2:6].strip()
        for line in text.splitlines()
        if line[2:6].strip() in ("ok", "FAIL", "????")
    }


async def test_against_the_running_daemon(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, tls=True, card_reader=True, audio=ALSA_NULL) as d:
        status = await d.wait_status(lambda s: True)
        code, out = await run_check("-c", str(d.config_path), "--sound")
        # Null until the ledger client reports the ledger's clock (the payments issue).
        clock_known = isinstance(status["ledger"]["clock_skew_s"], int | float)
        assert marks(out) == {
            "config": "ok",
            "posd": "ok",
            "card reader": "ok",
            "QR scanner": "ok",
            "ledger": "ok",
            # The test certificates are made for 30 days: less than 30 are left.
            "certificate": "FAIL",
            "clock": "ok" if clock_known else "????",
            "disk": "ok",
            "orders link": "ok",
            "monitoring": "ok",
            "audio": "ok",
        }
        assert code == os.EX_UNAVAILABLE
        assert f"card reader  ready on {d.reader.port}" in out  # type: ignore[union-attr]
        assert "orders link  not used (orders.enabled = false)" in out
        assert "monitoring   not used (mqtt.enabled = false)" in out
        assert f"ledger       signed on to localhost:{d.ledger.port}" in out
        assert "(CN=T0000001) expires on " in out and "in 29 days (less than 30)" in out
        assert "fix: posd enroll --key /etc/posd/terminal-new.key makes a new key" in out
        assert "audio        played the chime on alsa: did you hear it?" in out
        assert out.rstrip().endswith("fix each line, then posd check again")

        assert d.reader is not None
        d.reader.unplug()
        await d.wait_status(lambda s: s["devices"]["card_reader"]["state"] == "disconnected")
        code, out = await run_check("-c", str(d.config_path), "--json")
    data = json.loads(out)
    assert data["ready"] is False and data["config"] == str(d.config_path)
    by_item = {c["item"]: c for c in data["checks"]}
    reader = by_item["card reader"]
    assert reader["state"] == "fail" and reader["detail"].startswith("disconnected")
    assert "cable and power" in reader["fix"]
    assert set(by_item["posd"]) == {"item", "state", "detail", "fix"}


async def test_without_a_daemon_it_pings_the_reader(tmp_path: Path) -> None:
    with SimulatedSerialScanner() as scanner:
        async with SimulatedCardReader(model="SR-7", firmware="2.4.1", serial="R42") as reader:
            port = reader.port
            config = write_config(
                tmp_path,
                card_reader={"port": port},
                qr_scanner={"kind": "serial", "port": scanner.port},
            )
            code, out = await run_check("-c", str(config), host=no_host(tmp_path))
    assert code == os.EX_UNAVAILABLE
    assert marks(out) == {
        "config": "ok",
        "posd": "FAIL",
        "card reader": "ok",
        "QR scanner": "ok",
        "ledger": "FAIL",
        "certificate": "ok",
        "clock": "????",
        "disk": "ok",
        "orders link": "ok",
        "monitoring": "ok",
        "audio": "ok",
    }
    assert f"not running (nothing answers on {tmp_path / 'api.sock'})" in out
    assert "fix: systemctl start posd" in out
    assert f"SR-7, firmware 2.4.1, serial R42 on {port}" in out
    assert "ledger       not checked: only the running posd can say" in out
    assert "certificate  ledger.tls = false: none needed" in out
    assert 'audio        not used (audio.output = "none", orders off)' in out
    assert "NOT READY (2 red, 1 unknown)" in out


async def test_a_bad_or_missing_config_stops_the_check(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[card_reader]\nbaudrate = 12\n")
    code, out = await run_check("-c", str(bad))
    assert code == os.EX_CONFIG
    assert "FAIL  config       9 problems, the first: " in out
    assert f"fix: posd config check {bad}" in out
    assert list(marks(out)) == ["config"]  # nothing else was checked
    code, out = await run_check("-c", str(tmp_path / "absent.toml"))
    assert code == os.EX_NOINPUT and "config file not found" in out


def situation(config: Config, status: dict[str, Any] | None = None, **kw: Any) -> Situation:
    no_status = None if status is not None else Line("posd", "fail", "not running", "start it")
    return Situation(config, status, no_status, **kw)


@pytest.fixture
def tls_config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, ledger={"tls": True, "host": "localhost"}))


async def test_certificate_validity_thresholds(tls_config: Config) -> None:
    assert tls_config.ledger.cert_file is not None
    cert = x509.load_pem_x509_certificate(tls_config.ledger.cert_file.read_bytes())
    begin, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    day = datetime.timedelta(days=1)

    async def at(now: datetime.datetime) -> Line:
        return await check_certificate(situation(tls_config, now=now))

    fine = await at(end - 30 * day - datetime.timedelta(minutes=1))
    assert (fine.mark, fine.detail.split(" valid until ")[1]) == ("ok", f"{end:%Y-%m-%d} (30 days)")
    short = await at(end - 29 * day)
    assert short.mark == "fail" and "in 29 days (less than 30)" in short.detail
    gone = await at(end + day)
    assert gone.mark == "fail" and f"expired on {end:%Y-%m-%d}" in gone.detail
    early = await at(begin - day)
    assert early.mark == "fail" and "is valid only from" in early.detail
    assert early.fix is not None and "timedatectl" in early.fix


async def test_certificate_unreadable(tls_config: Config, tmp_path: Path) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    config = replace(tls_config, ledger=replace(tls_config.ledger, cert_file=not_pem))
    line = await check_certificate(situation(config))
    assert (line.mark, line.detail) == ("fail", f"{not_pem} holds no PEM certificate")
    config = replace(tls_config, ledger=replace(tls_config.ledger, cert_file=tmp_path / "gone"))
    line = await check_certificate(situation(config))
    assert line.mark == "fail" and "No such file" in line.detail


@pytest.mark.parametrize(
    ("ledger", "mark", "words"),
    [
        ({"link": "up", "clock_skew_s": 2.5}, "ok", "within 2.5 s of the ledger's"),
        ({"link": "up", "clock_skew_s": -45.0}, "fail", "45 s off the ledger's"),
        ({"link": "down", "clock_skew_s": None}, "unknown", "has not told its time yet"),
        ({"link": "up"}, "unknown", "does not report the ledger's clock"),
        ({"link": "up", "clock_skew_s": None}, "unknown", "does not report the ledger's clock"),
    ],
)
async def test_clock_lines(tmp_path: Path, ledger: dict[str, Any], mark: str, words: str) -> None:
    config = load_config(write_config(tmp_path))
    line = await check_clock(situation(config, {"ledger": ledger}))
    assert line.mark == mark and words in line.detail
    assert (await check_clock(situation(config))).mark == "unknown"


async def test_disk_threshold_and_journal_errors(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    fine = await check_disk(situation(config, {}, disk_min_free=1))
    assert fine.mark == "ok" and f"free for {config.storage.state_dir}" in fine.detail
    full = await check_disk(situation(config, {}, disk_min_free=1 << 62))
    assert full.mark == "fail" and f"less than {(1 << 62) / 2**30:.1f} GiB" in full.detail
    assert full.fix is not None and full.fix.startswith(f"df -h {config.storage.state_dir}")
    failing = {"storage": {"state": "error", "last_error": "database or disk is full"}}
    line = await check_disk(situation(config, failing))
    assert (line.mark, line.detail) == ("fail", "the journal fails: database or disk is full")


async def test_audio_lines(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, audio={"output": "alsa", "device": "hw:7"}))
    line = await check_audio(situation(config, sound=True))
    assert line.mark == "fail" and line.detail.startswith(("disconnected", "error"))
    null = load_config(write_config(tmp_path, audio=ALSA_NULL))
    line = await check_audio(situation(null))
    assert (line.mark, line.detail) == ("ok", "alsa ready (null); --sound to hear it")
    silent = load_config(write_config(tmp_path))
    deaf = replace(silent, orders=replace(silent.orders, enabled=True))
    line = await check_audio(situation(deaf))
    assert line.mark == "fail" and "an order would not be heard" in line.detail


async def test_mqtt_link_lines_read_the_running_posd(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            mqtt={"enabled": True, "host": "broker.test", "port": 8883},
            orders={"enabled": True},
        )
    )
    up = {
        "connects": 2,
        "orders": {"link": "up", "can_alert": True, "reason": None},
        "mqtt": {"link": "up", "last_error": None},
    }
    orders = await check_orders_link(situation(config, up))
    assert orders == Line(
        "orders link", "ok", "subscribed to baedal/M00000000000001/orders at broker.test:8883"
    )
    monitoring = await check_monitoring_link(situation(config, up))
    assert monitoring.mark == "ok"
    assert monitoring.detail == (
        "online at broker.test:8883 as posd-T0000001 (2 connects since start)"
    )
    reason = "orders link down for more than 60 s (connection refused)"
    down = {
        "orders": {"link": "down", "can_alert": False, "reason": reason},
        "mqtt": {"link": "down", "last_error": "broker refused the credentials"},
    }
    orders = await check_orders_link(situation(config, down))
    assert (orders.mark, orders.detail) == ("fail", f"link down to broker.test:8883: {reason}")
    assert orders.fix is not None and "orders.host" in orders.fix
    monitoring = await check_monitoring_link(situation(config, down))
    assert monitoring.mark == "fail" and monitoring.detail.endswith("refused the credentials")
    assert monitoring.fix is not None and "posd/T0000001/" in monitoring.fix
    # No posd answering: only it can say.
    assert (await check_orders_link(situation(config))).mark == "fail"
    assert (await check_monitoring_link(situation(config))).mark == "fail"


async def test_audio_line_is_the_running_posds_word(tmp_path: Path) -> None:
    # An output this machine cannot play on: the daemon's status decides, not a look here.
    config = load_config(write_config(tmp_path, audio={"output": "alsa", "device": "hw:7"}))
    ready = {"devices": {"audio": {"state": "ready", "output": "alsa"}}}
    line = await check_audio(situation(config, ready))
    assert (line.mark, line.detail) == ("ok", "alsa ready, says posd; --sound to hear it")
    why = "no working audio output (alsa: no card)"
    deaf = {
        "devices": {"audio": {"state": "error", "output": "alsa"}},
        "orders": {"can_alert": False, "reason": why},
    }
    line = await check_audio(situation(config, deaf))
    assert (line.mark, line.detail) == ("fail", f"error (alsa), says posd: {why}")


def test_colour_only_on_a_terminal_without_no_color() -> None:
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as terminal:
            assert check_cli.use_color(terminal, {})
            assert not check_cli.use_color(terminal, {"NO_COLOR": "1"})
            assert not check_cli.use_color(terminal, {"TERM": "dumb"})
            assert check_cli.use_color(terminal, {"NO_COLOR": ""})
        assert not check_cli.use_color(io.StringIO(), {})
    finally:
        os.close(master)
        os.close(slave)
    lines = [Line("disk", "ok", "fine"), Line("clock", "unknown", "?", "look")]
    coloured = check_cli.render(lines, color=True)
    assert "\x1b[32mok  \x1b[0m" in coloured and "\x1b[33m????\x1b[0m" in coloured
    plain = check_cli.render(lines, color=False)
    assert "\x1b" not in plain
    assert plain.splitlines() == [
        "  ok    disk         fine",
        "  ????  clock        ?",
        "                     fix: look",
        "NOT READY (1 unknown): fix each line, then posd check again",
    ]


def test_the_command_is_in_the_tree() -> None:
    args = build_parser().parse_args(["check", "--sound", "--json", "-c", "x.toml"])
    assert (args.command, args.sound, args.json, args.config) == ("check", True, True, "x.toml")


def test_tls_files_are_what_the_certificate_test_expects(tmp_path: Path) -> None:
    files = write_tls_files(tmp_path)
    cert = x509.load_pem_x509_certificate(files.client_cert_file.read_bytes())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(days=31)
