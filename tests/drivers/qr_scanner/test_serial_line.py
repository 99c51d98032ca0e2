"""The serial QR scanner driver against the simulated scanner on a pseudo-terminal."""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from drivers.qr_scanner import ScannerLines, SerialQrScanner
from posd.sim import SimulatedSerialScanner
from posd.sim.qr_issuer import MERCHANT_PRESENTED_QR, QrIssuer
from protocols.hid_keyboard import MAX_CODE_CHARS
from protocols.qr_token import QrRejected, QrToken, verify_qr
from tests.helpers.components import Scans, running, wait_until
from tests.helpers.unprivileged import run_python


def scanner_on(port: str, scans: Scans) -> SerialQrScanner:
    return SerialQrScanner(scans, port=port, rescan_initial_s=0.01, rescan_max_s=0.05)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatedSerialScanner]:
    with SimulatedSerialScanner(link=tmp_path / "posd-scanner") as scanner:
        yield scanner


async def test_codes_end_with_cr_lf_or_crlf(sim: SimulatedSerialScanner) -> None:
    scans = Scans()
    scanner = scanner_on(sim.port, scans)
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
        assert scanner.device == sim.port
        await sim.scan("first")
        await sim.scan("second", terminator="\n")
        await sim.scan("third", terminator="\r\n")
        await sim.write(b"fourth\r\n\r\nfif")
        await sim.write(b"th\r")
        assert [await scans.next() for _ in range(5)] == [
            "first", "second", "third", "fourth", "fifth"
        ]  # fmt: skip
        assert scans.empty()


async def test_over_long_input_is_dropped(sim: SimulatedSerialScanner) -> None:
    scans = Scans()
    scanner = scanner_on(sim.port, scans)
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
        await sim.scan("x" * MAX_CODE_CHARS)
        assert await scans.next() == "x" * MAX_CODE_CHARS
        await sim.scan("y" * (MAX_CODE_CHARS + 1))
        await sim.scan("after")
        assert await scans.next() == "after"
        assert scanner.discarded == 1


async def test_unplug_and_replug(sim: SimulatedSerialScanner) -> None:
    scans = Scans()
    scanner = scanner_on(sim.port, scans)
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
        sim.unplug()
        await wait_until(lambda: scanner.state == "disconnected", "disconnected")
        sim.replug()
        await wait_until(lambda: scanner.state == "ready", "ready again")
        await sim.scan("back")
        assert await scans.next() == "back"


async def test_absent_port_at_start(tmp_path: Path) -> None:
    link = tmp_path / "posd-scanner"
    scans = Scans()
    scanner = scanner_on(str(link), scans)
    async with running(scanner):
        await wait_until(lambda: scanner._next_delay_s >= 0.04, "a few looks")
        assert scanner.state == "disconnected"
        with SimulatedSerialScanner(link=link) as sim:
            await wait_until(lambda: scanner.state == "ready", "ready")
            await sim.scan("hello")
            assert await scans.next() == "hello"


# Run in a child without root's override of file modes (CI runs the suite as root); it prints
# the scanner's state and error once it has tried the port.
NO_PERMISSION_CHILD = """
import asyncio, sys
from tests.drivers.qr_scanner.test_serial_line import scanner_on
from tests.helpers.components import Scans, running, wait_until

async def main() -> None:
    scanner = scanner_on(sys.argv[1], Scans())
    async with running(scanner):
        await wait_until(lambda: scanner.state != "disconnected", "a verdict")
        print(scanner.state)
        print(scanner.last_error)

asyncio.run(main())
"""


def test_a_port_without_permission_shows_error(tmp_path: Path) -> None:
    port = tmp_path / "ttyNOPE"
    port.touch(mode=0o000)
    child = run_python("-c", NO_PERMISSION_CHILD, str(port))
    assert child.returncode == 0, child
    state, error = child.stdout.splitlines()
    assert state == "error" and "dialout" in error, child


@pytest.mark.parametrize(
    ("number", "state", "words"),
    [
        (errno.ENOENT, "disconnected", None),
        (errno.EACCES, "error", "group dialout"),
        (errno.EAGAIN, "error", "in use by another program"),
        (errno.EINVAL, "error", "cannot open"),
    ],
)
def test_open_failures_map_to_states(number: int, state: str, words: str | None) -> None:
    # pyserial's own exception for a failed open, as posd meets it on a real port.
    scanner = scanner_on("/dev/ttyACM9", Scans())
    scanner._open_failed(serial.SerialException(number, "could not open port /dev/ttyACM9"))
    assert scanner.state == state
    if words is None:
        assert scanner.last_error is None
    else:
        assert scanner.last_error is not None and words in scanner.last_error


async def test_a_port_held_by_another_program_shows_error(sim: SimulatedSerialScanner) -> None:
    first = scanner_on(sim.port, Scans())
    second = scanner_on(sim.port, Scans())
    async with running(first):
        await wait_until(lambda: first.state == "ready", "first ready")
        async with running(second):
            await wait_until(lambda: second.state == "error", "second refused")
            assert second.last_error is not None and "in use" in second.last_error


async def test_issued_tokens_through_the_scanner_to_the_checks(
    sim: SimulatedSerialScanner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    issuer = QrIssuer()
    tokens = {
        "valid": issuer.valid(),
        "qr_expired": issuer.expired(),
        "qr_not_yet_valid": issuer.not_yet_valid(),
        "qr_too_long_lived": issuer.too_long_lived(),
        "qr_bad_signature": issuer.bad_signature(),
        "qr_unknown_key": issuer.unknown_key(),
        "qr_not_seoroeum": MERCHANT_PRESENTED_QR,
    }
    scans = Scans()
    scanner = scanner_on(sim.port, scans)
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
        for text in tokens.values():
            await sim.scan(text)
        received = [await scans.next() for _ in tokens]
    assert received == list(tokens.values())
    for expected, text in tokens.items():
        verdict = verify_qr(text, issuer.keys, int(time.time()))
        if expected == "valid":
            assert isinstance(verdict, QrToken)
        else:
            assert isinstance(verdict, QrRejected) and verdict.reason == expected
    assert "read a code of" in caplog.text
    for text in tokens.values():
        assert text[:24] not in caplog.text


async def test_non_ascii_bytes_cannot_pass_as_a_token(sim: SimulatedSerialScanner) -> None:
    scans = Scans()
    scanner = scanner_on(sim.port, scans)
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
        await sim.write(b"hQVD\xc3\xa9UFYw\r")
        code = await scans.next()
    assert code == "hQVD\ufffd\ufffdUFYw"
    verdict = verify_qr(code, {}, 0)
    assert isinstance(verdict, QrRejected) and verdict.reason == "qr_unreadable"


def test_scanner_lines_cap_and_terminators() -> None:
    lines = ScannerLines(max_chars=4)
    assert lines.feed(b"abcd\r\n") == ["abcd"]
    assert lines.feed(b"abc") == []
    assert lines.feed(b"de\rok\n") == ["ok"]
    assert lines.overflows == 1
    assert lines.feed(b"\r\n\n\r") == []
    assert lines.feed(b"toolong") == []
    assert lines.feed(b"still\r") == []
    assert lines.feed(b"x\r") == ["x"]
    assert lines.overflows == 2
