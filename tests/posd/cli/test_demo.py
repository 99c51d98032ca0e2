"""`posd demo` as a technician runs it: its own process, exit status, and what it prints; with
--interactive, the API open for curl and the customer played from stdin."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from posd.api import ApiClient
from posd.sim.ledger_accounts import DEMO_QR_ACCOUNT, GOOD_CARD, GOOD_QR_ACCOUNT, POOR_CARD

pytestmark = pytest.mark.timeout(90)

REPO_ROOT = Path(__file__).resolve().parents[3]
# The payments issue: the demo exits 0 when every step behaved, in under 60 s.
DEADLINE_S = 60.0
WAIT_S = 20.0
FULL_NUMBERS = (GOOD_CARD, POOR_CARD, GOOD_QR_ACCOUNT, DEMO_QR_ACCOUNT)
# A QR token is base64 of a TLV that starts 85 05 "CPV01": its text starts "hQVDUFYwM".
QR_TOKEN = re.compile(r"hQVDUFYwM[A-Za-z0-9+/=]{20,}")


def _no_card_data(text: str) -> None:
    for secret in FULL_NUMBERS:
        assert secret not in text
    assert not QR_TOKEN.search(text)


async def test_demo_runs_the_shift_and_exits_0() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "posd",
        "demo",
        cwd=REPO_ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out_bytes, err_bytes = await asyncio.wait_for(process.communicate(), DEADLINE_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    out, err = out_bytes.decode(), err_bytes.decode()
    assert process.returncode == 0, f"exit {process.returncode}\n{out}\n{err}"
    lines = out.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")], out
    assert "Traceback" not in out + err
    text = out.lower()
    for step in (
        "혜택플러스",
        "chip",
        "contactless",
        "qr",
        "declined",
        "refund",
        "cancelled",
        "answered 200 as cancelled",
        "approved_offline",
        "forwarded",
        "배달서구 order arrives",
        "acknowledged",
        "missed",
    ):
        assert step in text, f"no {step} step in:\n{out}"
    assert re.search(r"declined +reason insufficient_funds", text), out
    assert re.search(r"^16 of 16 steps behaved, in \d+\.\d s$", out, re.M), out
    assert re.search(r"^ +mqtt  payment +p_\w+ approved 9,500 won chip …0001$", out, re.M), out
    _no_card_data(out + err)


class Demo:
    """A `posd demo --interactive` process, read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[str] = []

    async def line_where(self, wanted: Callable[[str], bool]) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(WAIT_S):
            while True:
                raw = await self.process.stdout.readline()
                assert raw, "the demo ended its output early:\n" + "\n".join(self.seen)
                line = raw.decode().rstrip("\n")
                self.seen.append(line)
                if wanted(line):
                    return line

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def socket(self) -> Path:
        line = await self.line_where(lambda s: s.startswith("still running: POS API on "))
        assert self.seen[-2].startswith("16 of 16 steps behaved"), "\n".join(self.seen)
        return Path(line.removeprefix("still running: POS API on ").split(";")[0])

    async def exit_status(self) -> int:
        assert self.process.stdout is not None
        async with asyncio.timeout(WAIT_S):
            rest = await self.process.stdout.read()
            self.seen.extend(rest.decode().splitlines())
            return await self.process.wait()


@asynccontextmanager
async def interactive_demo(stdin: int) -> AsyncIterator[Demo]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "posd",
        "demo",
        "--interactive",
        cwd=REPO_ROOT,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "POSD_DEMO_LOG": "error"},
    )
    try:
        yield Demo(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _until(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"{what}: not within {WAIT_S:.0f} s")


async def test_interactive_keeps_the_api_open_and_plays_the_customer() -> None:
    async with interactive_demo(asyncio.subprocess.PIPE) as demo:
        sock = await demo.socket()
        curls = await demo.line_where(lambda s: "curl --unix-socket" in s and "/v1/status" in s)
        assert f"curl --unix-socket {sock} http://posd/v1/status" in curls
        await demo.line_where(lambda s: s.startswith("  help, quit"))

        for bad, answer in (
            ("pay 1000", "? no command 'pay'"),
            ("card visa", "? no test card 'visa'"),
            ("qr stolen", "? no QR kind 'stolen'"),
            ("ledger sideways", "? ledger takes down or up"),
        ):
            await demo.send(bad)
            assert (await demo.line_where(lambda s: s.startswith("?"))).startswith(answer)

        async with ApiClient(sock) as api:
            await demo.send("card seoroeum-contactless")
            await demo.line_where(lambda s: s.startswith("card seoroeum-contactless at"))
            created = await api.create_payment(2_000, "any", uuid.uuid4().hex, True)
            pid = created["payment_id"]
            approved = await demo.line_where(lambda s: pid in s and " approved " in s)
            assert re.search(r"2,000 won  discount 100  charged  1,900  approved", approved)
            assert (await api.payment(pid))["state"] == "approved"

            await demo.send("ledger down")
            await demo.line_where(lambda s: s == "ledger down")

            async def link_down() -> bool:
                return bool((await api.status())["ledger"]["link"] != "up")

            await _until("the ledger link down", link_down)
            await demo.send("ledger up")
            await demo.line_where(lambda s: s == "ledger up")

            async def link_up() -> bool:
                return bool((await api.status())["ledger"]["link"] == "up")

            await _until("the ledger link up again", link_up)

            created = await api.create_payment(5_000, "qr", uuid.uuid4().hex)
            pid = created["payment_id"]
            await demo.line_where(lambda s: pid in s and "waiting_for_card" in s)
            await demo.send("qr expired")
            declined = await demo.line_where(lambda s: pid in s and " declined " in s)
            assert "reason " in declined and "reason -" not in declined

            await _run_the_printed_curl_examples(demo, api)

        await demo.send("quit")
        assert await demo.exit_status() == 0, "\n".join(demo.seen)
    assert not sock.exists()
    _no_card_data("\n".join(demo.seen))


def _printed_curl_examples(seen: list[str]) -> dict[str, list[str]]:
    """The curl lines the demo printed, continuation lines joined, by endpoint."""
    start = seen.index("Try, from another terminal:") + 1
    end = next(i for i, line in enumerate(seen) if line.startswith("Then play the customer"))
    text = "\n".join(seen[start:end]).replace("\\\n", " ")
    examples: dict[str, list[str]] = {}
    for line in text.splitlines():
        argv = shlex.split(line)
        url = next(arg for arg in argv if arg.startswith("http://posd/"))
        method = argv[argv.index("-X") + 1] if "-X" in argv else "GET"
        examples[f"{method} {url.removeprefix('http://posd')}"] = argv
    return examples


async def _curl(argv: list[str], payment_id: str = "") -> tuple[int, str]:
    """Run a printed example with real curl; its HTTP status and body."""
    argv = [arg.replace("PAYMENT_ID", payment_id) for arg in argv]
    process = await asyncio.create_subprocess_exec(
        *argv, "-s", "--max-time", "5", "-w", "\n%{http_code}", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    body, _, code = out.decode().rpartition("\n")
    return int(code), body


async def _run_the_printed_curl_examples(demo: Demo, api: ApiClient) -> None:
    examples = _printed_curl_examples(demo.seen)
    assert set(examples) == {
        "GET /v1/status",
        "GET /v1/events",
        "POST /v1/payments",
        "GET /v1/payments/PAYMENT_ID",
        "POST /v1/payments/PAYMENT_ID/cancel",
        "POST /v1/payments/PAYMENT_ID/refund",
        "GET /v1/totals",
        "GET /v1/orders",
        "POST /v1/orders/ORDER_ID/ack",
    }
    assert (await _curl(examples["GET /v1/status"]))[0] == 200
    status, body = await _curl(examples["GET /v1/orders"])
    assert status == 200, body
    status, body = await _curl(examples["POST /v1/orders/ORDER_ID/ack"])
    assert (status, json.loads(body)["error"]["code"]) == (404, "unknown_order"), body
    await demo.send("card seoroeum-contactless")
    await demo.line_where(lambda s: s.startswith("card seoroeum-contactless at"))
    status, body = await _curl(examples["POST /v1/payments"])
    assert status == 202, body
    pid = json.loads(body)["payment_id"]
    await demo.line_where(lambda s: pid in s and " approved " in s)
    status, body = await _curl(examples["GET /v1/payments/PAYMENT_ID"], pid)
    assert (status, json.loads(body)["state"]) == (200, "approved")
    status, body = await _curl(examples["POST /v1/payments/PAYMENT_ID/refund"], pid)
    assert status == 202, body
    waiting = await api.create_payment(1_000, "qr", uuid.uuid4().hex)
    status, body = await _curl(
        examples["POST /v1/payments/PAYMENT_ID/cancel"], waiting["payment_id"]
    )
    assert (status, json.loads(body)["state"]) == (200, "cancelled")
    assert (await _curl(examples["GET /v1/totals"]))[0] == 200


async def test_interactive_with_no_stdin_runs_until_sigterm() -> None:
    async with interactive_demo(asyncio.subprocess.DEVNULL) as demo:
        sock = await demo.socket()
        async with ApiClient(sock) as api:
            assert (await api.status())["ledger"]["link"] == "up"
        demo.process.send_signal(signal.SIGTERM)
        assert await demo.exit_status() == 0, "\n".join(demo.seen)
    assert not sock.parent.exists()
