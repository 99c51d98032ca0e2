"""`posd status` and `posd saf` against the real API on a real socket (and with none)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from posd.cli import status as status_cli
from tests.helpers.configs import write_config
from tests.helpers.payment_service import (
    MemoryPaymentService,
    RunningApi,
    local_api,
    start_api,
)

NOT_RUNNING = "is posd running? (systemctl status posd)"


async def _serve(tmp_path: Path) -> RunningApi:
    service = MemoryPaymentService()
    socket_path = tmp_path / "api.sock"
    api = local_api(service, socket_path, group=None)
    return RunningApi(api, service, socket_path, await start_api(api))


async def _in_thread(function: Callable[[str, bool], int], *args: Any) -> int:
    # The commands run their own event loop (asyncio.run), as they do from the shell.
    return await asyncio.to_thread(function, *args)


async def test_status_prints_readable_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    running = await _serve(tmp_path)
    try:
        assert await _in_thread(status_cli.status, str(config), False) == 0
    finally:
        await running.stop()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("posd test on terminal T0000001 (merchant M00000000000001), up 0m 01s")
    assert "  ledger       up (rtt 1.5 ms)" in out
    assert "  card reader  ready on /dev/pts/9, firmware 1.0" in out
    assert "  qr scanner   ready (serial)" in out
    assert "  saf queue    0 pending" in out
    assert "  today        0 approved, 0 declined, 0 won" in out


async def test_status_json_is_the_raw_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    running = await _serve(tmp_path)
    try:
        assert await _in_thread(status_cli.status, str(config), True) == 0
        expected = await running.service.status()
    finally:
        await running.stop()
    printed = json.loads(capsys.readouterr().out)
    assert printed.pop("api")["socket"] == str(tmp_path / "api.sock")
    assert printed == expected


@pytest.mark.parametrize("stale", [False, True], ids=["no-socket", "stale-socket"])
def test_no_daemon_exits_69_saying_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stale: bool
) -> None:
    config = write_config(tmp_path)
    if stale:
        dead = socket.socket(socket.AF_UNIX)
        dead.bind(str(tmp_path / "api.sock"))
        dead.close()
    assert status_cli.status(str(config), False) == os.EX_UNAVAILABLE
    assert status_cli.saf(str(config), False) == os.EX_UNAVAILABLE
    assert status_cli.saf(str(config), True) == os.EX_UNAVAILABLE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count(NOT_RUNNING) == 3


def test_unusable_config_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert status_cli.status(str(tmp_path / "absent.toml"), False) == os.EX_CONFIG
    assert status_cli.saf(str(tmp_path / "absent.toml"), True) == os.EX_CONFIG
    assert "config file not found" in capsys.readouterr().err


async def test_saf_lists_masked_entries_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    running = await _serve(tmp_path)
    running.service.saf_queue.extend(
        [
            {
                "payment_id": "p7",
                "kind": "advice",
                "amount": 12000,
                "stan": 31,
                "card_last4": "4321",
                "queued_at": "2026-11-25T01:00:00Z",
                "attempts": 2,
                "last_error": "ledger link down",
                "next_attempt_at": "2026-11-25T01:00:30Z",
                # A field the listing does not know is never printed, whatever it holds.
                "debug": "9410123456784321",
            },
            {"payment_id": "p8", "kind": "reversal", "amount": 500, "account_last4": "8899"},
            {
                "payment_id": "p9",
                "kind": "reversal",
                "amount": 700,
                "stan": 40,
                "card_last4": "1111",
                "attempts": 1,
                "needs_attention": True,
                "refused_code": "30",
            },
        ]
    )
    try:
        assert await _in_thread(status_cli.saf, str(config), False) == 0
    finally:
        await running.stop()
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "store-and-forward queue: 3 waiting, oldest first"
    assert (
        "advice   p7  12,000 won  stan 31  ****4321  attempts 2  last error: ledger link down"
        "  next try 2026-11-25T01:00:30Z" in out
    )
    assert "reversal p8  500 won  stan -  ****8899  attempts -" in out
    assert "p9  700 won  stan 40  ****1111  attempts 1  NEEDS ATTENTION (ledger answered 30)" in out
    assert "9410123456784321" not in out


async def test_saf_empty_and_flush(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    running = await _serve(tmp_path)
    try:
        assert await _in_thread(status_cli.saf, str(config), False) == 0
        assert capsys.readouterr().out == "store-and-forward queue: empty\n"
        running.service.saf_queue.append({"payment_id": "p1", "kind": "advice"})
        running.service.ledger_up = False
        assert await _in_thread(status_cli.saf, str(config), True) == os.EX_UNAVAILABLE
        assert "ledger link is down" in capsys.readouterr().err
        running.service.ledger_up = True
        assert await _in_thread(status_cli.saf, str(config), True) == 0
        assert capsys.readouterr().out == "forwarded 1, 0 still waiting\n"
    finally:
        await running.stop()


def test_render_status_shows_the_ledger_error_only_while_down() -> None:
    up = {"ledger": {"link": "up", "last_rtt_ms": 2.0, "last_error": "connection reset"}}
    assert "  ledger       up (rtt 2.0 ms)\n" in status_cli.render_status(up)


def test_render_status_copes_with_unknowns() -> None:
    text = status_cli.render_status({"ledger": {"link": "down", "last_error": "refused"}})
    assert "ledger       down, last error: refused" in text
    assert "card reader  -" in text


def test_render_status_flags_saf_entries_that_need_attention() -> None:
    calm = {"saf": {"pending": 1, "pending_amount": 500, "oldest_age_s": 30, "needs_attention": 0}}
    assert "NEED ATTENTION" not in status_cli.render_status(calm)
    stuck = {"saf": {"pending": 2, "pending_amount": 900, "oldest_age_s": 90, "needs_attention": 1}}
    assert "1 NEED ATTENTION (posd saf)" in status_cli.render_status(stuck)


def test_render_status_shows_a_journal_storage_failure() -> None:
    fine = {"storage": {"state": "ready", "last_error": None}}
    assert "  journal      ready\n" in status_cli.render_status(fine)
    full = {"storage": {"state": "error", "last_error": "database or disk is full"}}
    text = status_cli.render_status(full)
    expected = "error: database or disk is full (free space under storage.state_dir)"
    assert f"  journal      {expected}" in text


def test_status_never_prints_escapes_whatever_the_state_holds() -> None:
    state = {
        "version": "1\x1b[2J",
        "devices": {"card_reader": {"state": "ready", "firmware": "\x1b]0;owned\x07fw\u202e"}},
        "ledger": {"link": "down", "last_error": "peer said \x1b[31mno\r\nmore"},
        "api": {
            "socket": "/run/posd/api.sock",
            "connections": 3,
            "max_connections": 1024,
            "tcp": {"state": "error", "port": 8787, "last_error": "port in use"},
        },
    }
    shown = status_cli.render_status(state)
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "\r" not in shown and len(shown.splitlines()) == 11
    assert "firmware \\x1b]0;owned\\x07fw\\u202e" in shown
    api_row = "  local api    /run/posd/api.sock, 3 of 1024 connections; tcp 127.0.0.1:8787 error"
    assert api_row in shown


def test_render_status_says_loudly_when_the_shop_is_deaf() -> None:
    hearing = {"orders": {"alerting": 1, "missed_today": 0, "link": "up", "can_alert": True}}
    line = "  orders       1 alerting, 0 missed today, link up\n"
    assert line in status_cli.render_status(hearing)
    reason = "orders link down for more than 60 s (connection refused)"
    deaf = {"orders": {"alerting": 0, "missed_today": 2, "link": "down", "can_alert": False,
                       "reason": reason}}  # fmt: skip
    assert f"link down; DEAF: {reason}" in status_cli.render_status(deaf)


def test_status_lines_show_what_the_operations_centre_would_call_about() -> None:
    state = {
        "terminal_id": "T0000001",
        "merchant_id": "M00000000000001",
        "version": "0.1.0",
        "ts": "2026-12-02T09:00:00Z",
        "boot_id": "b00t",
        "connects": 3,
        "uptime_s": 3700,
        "config_sha256": "0" * 64,
        "ledger": {"link": "up", "last_rtt_ms": 4.0, "last_error": None, "clock_skew_s": -2.0},
        "devices": {
            "card_reader": {"state": "ready", "port": "/dev/posd-reader", "firmware": "2.1"},
            "qr_scanner": {"state": "ready", "kind": "usb-hid"},
            "audio": {"state": "disabled", "output": "none"},
        },
        "saf": {"pending": 2, "pending_amount": 9000, "oldest_age_s": 300000, "alarm": True},
        "orders": {
            "alerting": 0,
            "missed_today": 1,
            "link": "down",
            "can_alert": False,
            "reason": "the orders link is down",
        },
        "payments_today": {"approved": 5, "declined": 1, "amount": 40000},
        "mqtt": {
            "link": "down",
            "last_error": "broker b:8883 refused the credentials",
            "queued": 4,
            "dropped": 0,
        },
    }
    lines = status_cli.render_status(state).splitlines()
    assert lines[0].endswith("up 1h 01m, as of 2026-12-02T09:00:00Z")
    assert "  ledger       up (rtt 4.0 ms), clock skew -2.0 s" in lines
    assert any(line.startswith("  saf queue    2 pending") and "ALARM" in line for line in lines), (
        lines
    )
    assert (
        "  orders       0 alerting, 1 missed today, link down; DEAF: the orders link is down"
    ) in lines
    assert (
        "  monitoring   down, 3 connects, 4 events waiting, "
        "last error: broker b:8883 refused the credentials"
    ) in lines
