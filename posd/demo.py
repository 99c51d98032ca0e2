"""`posd demo`: the whole payment system on one machine with no hardware, through a scripted
shift, printing each step; exit 0 when every step behaved.

The simulated card reader and QR scanner run on pseudo-terminals, the reference ledger on a
loopback port, and posd's own daemon (journal, ledger link, store-and-forward, payment engine,
local API) in this process, in a throwaway directory. The demo plays the shop's POS app over
the local API socket, exactly as a real one would.

The 배달서구 order step of operations.md is not in this shift: the order alerts are not part
of this build yet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import secrets
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from posd.api_client import ApiClient, ApiRequestError, ApiUnavailable
from posd.config import Config, load_config
from posd.daemon import Daemon, prepare_state_dir
from posd.ledger_client import LedgerTimings
from posd.logs import setup_logging
from posd.payment_components import payment_components
from posd.sim.card_reader import SimulatedCardReader
from posd.sim.ledger import LedgerSimulator
from posd.sim.ledger_accounts import GOOD_QR_ACCOUNT
from posd.sim.qr_issuer import QrIssuer
from posd.sim.qr_scanner import SimulatedSerialScanner

EX_OK = 0
EX_SOFTWARE = 70
STEP_TIMEOUT_S = 20.0
BENEFIT_PLUS_BPS = 500
FINAL = frozenset({"approved", "declined", "approved_offline", "forwarded", "reversed"})
# The demo's ledger comes back at once after an outage, so reconnecting need not wait long.
DEMO_LINK = LedgerTimings(backoff_initial_s=0.2, backoff_max_s=1.0)


def _config_text(
    directory: Path, mac_key: Path, ledger_port: int, reader: str, scanner: str, keys: str
) -> str:
    return f"""
[terminal]
id = "T0000001"
merchant_id = "M00000000000001"
benefit_plus_rate_bps = {BENEFIT_PLUS_BPS}

[card_reader]
port = "{reader}"
accepted_prefixes = ["9410"]

[qr_scanner]
kind = "serial"
port = "{scanner}"

[qr]
{keys}

[ledger]
host = "127.0.0.1"
port = {ledger_port}
tls = false
mac_key_file = "{mac_key}"
timeout_s = 5

[mqtt]
enabled = false

[orders]
enabled = false

[audio]
output = "none"

[api]
socket = "{directory / "api.sock"}"

[storage]
state_dir = "{directory / "state"}"

[logging]
level = "warning"
"""


@dataclass
class Shift:
    api: ApiClient
    ledger: LedgerSimulator
    reader: SimulatedCardReader
    scanner: SimulatedSerialScanner
    issuer: QrIssuer
    print: Callable[[str], None]

    async def pay(
        self, amount: int, method: str, present: Callable[[], Awaitable[None]], bp: bool = False
    ) -> dict[str, Any]:
        created = await self.api.create_payment(amount, method, uuid.uuid4().hex, bp)
        await present()
        return await self.until(created["payment_id"], FINAL)

    async def card(self, amount: int, card: str, bp: bool = False) -> dict[str, Any]:
        async def present() -> None:
            self.reader.present(card)

        return await self.pay(amount, "card", present, bp)

    async def qr(self, amount: int) -> dict[str, Any]:
        async def present() -> None:
            await self.scanner.scan(self.issuer.valid(GOOD_QR_ACCOUNT))

        return await self.pay(amount, "qr", present)

    async def until(self, payment_id: str, states: frozenset[str]) -> dict[str, Any]:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            while True:
                payment = await self.api.payment(payment_id)
                if payment["state"] in states:
                    return payment
                await asyncio.sleep(0.05)

    async def status(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            while True:
                try:
                    status = await self.api.status()
                except ApiUnavailable:
                    status = None  # posd not listening yet
                except ApiRequestError as exc:
                    if exc.status != HTTPStatus.SERVICE_UNAVAILABLE:
                        raise
                    status = None  # listening, its journal still opening
                if status is not None and predicate(status):
                    return status
                await asyncio.sleep(0.05)


def _describe(payment: dict[str, Any]) -> str:
    parts = [f"{payment['state']}"]
    if payment.get("decline_reason"):
        parts.append(f"reason {payment['decline_reason']}")
    if payment.get("discount"):
        parts.append(f"discount {payment['discount']:,} won, charged {payment['charged']:,} won")
    if payment.get("auth_code"):
        parts.append(f"auth {payment['auth_code']}")
    shown = payment.get("card_last4") or payment.get("account_last4")
    if shown:
        parts.append(f"…{shown}")
    return ", ".join(parts)


async def _steps(shift: Shift) -> list[tuple[str, bool]]:
    results: list[tuple[str, bool]] = []

    def check(title: str, payment: dict[str, Any], ok: bool) -> None:
        results.append((title, ok))
        shift.print(f"{'ok  ' if ok else 'FAIL'} {title}: {_describe(payment)}")

    chip = await shift.card(10_000, "seoroeum", bp=True)
    check(
        "chip card, 10,000 won with 혜택플러스 5 %",
        chip,
        chip["state"] == "approved" and chip["charged"] == 9_500,
    )
    tap = await shift.card(4_500, "seoroeum-contactless")
    check("contactless card, 4,500 won", tap, tap["state"] == "approved")
    qr = await shift.qr(12_000)
    check("서로e음 app QR, 12,000 won", qr, qr["state"] == "approved")
    poor = await shift.card(50_000, "insufficient-funds")
    check(
        "card without enough money, 50,000 won",
        poor,
        poor["state"] == "declined" and poor["decline_reason"] == "insufficient_funds",
    )
    shift.print("---- the ledger goes away ----")
    await shift.ledger.refuse_connections(True)
    await shift.status(lambda s: s["ledger"]["link"] != "up")
    offline_qr = await shift.qr(8_000)
    check("QR while the ledger is down", offline_qr, offline_qr["state"] == "approved_offline")
    offline_tap = await shift.card(3_000, "seoroeum-contactless")
    check(
        "contactless while the ledger is down",
        offline_tap,
        offline_tap["state"] == "approved_offline",
    )
    saf = await shift.status(lambda s: s["saf"]["pending"] == 2)
    shift.print(f"     store-and-forward queue: {saf['saf']['pending']} advices waiting")
    shift.print("---- the ledger is back ----")
    await shift.ledger.refuse_connections(False)
    for title, payment in (("QR advice", offline_qr), ("contactless advice", offline_tap)):
        forwarded = await shift.until(payment["payment_id"], frozenset({"forwarded"}))
        check(f"{title} forwarded to the ledger", forwarded, forwarded["state"] == "forwarded")
    totals = await shift.api.totals()
    shift.print(
        f"     today: {totals['approved']['count']} payments, "
        f"{totals['approved']['charged']:,} won charged"
    )
    return results


async def run_demo(interactive: bool = False, out: Callable[[str], None] = print) -> int:
    with tempfile.TemporaryDirectory(prefix="posd-demo-") as tmp:
        directory = Path(tmp)
        issuer = QrIssuer()
        mac_key = secrets.token_bytes(32)
        mac_key_file = directory / "mac.key"
        mac_key_file.write_text(mac_key.hex() + "\n")
        mac_key_file.chmod(0o600)
        async with (
            LedgerSimulator(mac_key=mac_key) as ledger,
            SimulatedCardReader(link=directory / "posd-reader") as reader,
        ):
            with SimulatedSerialScanner() as scanner:
                config_path = directory / "posd.toml"
                config_path.write_text(
                    _config_text(
                        directory,
                        mac_key_file,
                        ledger.port,
                        reader.port,
                        scanner.port,
                        issuer.platform_keys_toml,
                    )
                )
                config = load_config(config_path)
                return await _serve_shift(
                    config, config_path, ledger, reader, scanner, issuer, interactive, out
                )


async def _serve_shift(
    config: Config,
    config_path: Path,
    ledger: LedgerSimulator,
    reader: SimulatedCardReader,
    scanner: SimulatedSerialScanner,
    issuer: QrIssuer,
    interactive: bool,
    out: Callable[[str], None],
) -> int:
    build = functools.partial(payment_components, ledger_timings=DEMO_LINK, api_group=None)
    daemon = Daemon(config, config_path, prepare_state_dir(config.storage.state_dir), build=build)
    serving = asyncio.create_task(daemon.serve())
    try:
        async with ApiClient(config.api.socket) as api:
            shift = Shift(api, ledger, reader, scanner, issuer, out)
            out(
                "posd demo: simulated reader, scanner and ledger; posd serving on "
                f"{config.api.socket}"
            )
            await shift.status(
                lambda s: (
                    s["ledger"]["link"] == "up"
                    and s["devices"]["card_reader"]["state"] == "ready"
                    and s["devices"]["qr_scanner"]["state"] == "ready"
                )
            )
            results = await _steps(shift)
            failed = [title for title, ok in results if not ok]
            out(f"{len(results) - len(failed)} of {len(results)} steps behaved")
            if interactive:
                out(f"still running: POS API on {config.api.socket}; Ctrl-C ends the demo")
                await serving
            return EX_OK if not failed else EX_SOFTWARE
    finally:
        daemon.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            await serving


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="posd demo", description=__doc__.splitlines()[0])
    parser.add_argument("--interactive", action="store_true", help="keep running after the shift")
    args = parser.parse_args(argv)
    setup_logging(os.environ.get("POSD_DEMO_LOG", "warning"), "text")
    try:
        return asyncio.run(run_demo(args.interactive))
    except TimeoutError:
        logging.getLogger(__name__).error("a demo step did not finish in %.0f s", STEP_TIMEOUT_S)
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
