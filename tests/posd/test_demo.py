"""`posd demo` as a technician runs it: its own process, exit status, and what it prints."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from posd.sim.ledger_accounts import DEMO_QR_ACCOUNT, GOOD_CARD, GOOD_QR_ACCOUNT, POOR_CARD

pytestmark = pytest.mark.timeout(90)

REPO_ROOT = Path(__file__).resolve().parents[2]
# operations.md: the demo exits 0 when every step behaved; the brief gives it 60 s.
DEADLINE_S = 60.0
FULL_NUMBERS = (GOOD_CARD, POOR_CARD, GOOD_QR_ACCOUNT, DEMO_QR_ACCOUNT)
# A QR token is base64 of a TLV that starts 85 05 "CPV01": its text starts "hQVDUFYwM".
QR_TOKEN = re.compile(r"hQVDUFYwM[A-Za-z0-9+/=]{20,}")


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
    assert not [line for line in lines if line.startswith(("FAIL", "WRONG"))], out
    assert "Traceback" not in out + err
    text = out.lower()
    for step in ("혜택플러스", "chip", "contactless", "qr", "declined", "approved_offline"):
        assert step in text, f"no {step} step in:\n{out}"
    assert re.search(r"declined.*reason \w+", text), out
    assert "forwarded" in text
    for secret in FULL_NUMBERS:
        assert secret not in out + err
    assert not QR_TOKEN.search(out + err)
