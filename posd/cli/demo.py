"""`posd demo`: the whole payment system on one machine with no hardware, through a scripted
shift, printing each step; exit 0 when every step behaved.

The simulated card reader and QR scanner run on pseudo-terminals, the reference ledger on a
loopback port, and posd's own daemon (journal, ledger link, store-and-forward, payment engine,
local API) in this process, in a throwaway directory. The demo plays the shop's POS app over
the local API socket, exactly as a real one would.

`--interactive` keeps it all running after the shift: the POS API stays open for
`curl --unix-socket`, every payment change is printed, and commands on stdin play the customer
(present a card, show a QR) and the network (take the ledger down and up).

The demo starts a Mosquitto of its own (posd.cli.demo_broker) for both of posd's MQTT links.
The 배달서구 order steps (demo_orders.py): an order arrives, the chime plays, the POS
acknowledges it; a second one nobody takes is missed. The operations centre
(demo_monitoring.py) watches the same broker: a line for every monitoring event posd
publishes (the orders' too), a signed command, and as the shift's last step the box's
retained availability and state as the operations centre sees them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import secrets
import shlex
import sys
import tempfile
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal

from posd.api import ApiClient, ApiRequestError, ApiUnavailable
from posd.cli.demo_broker import BrokerMissing, DemoBroker
from posd.cli.demo_monitoring import (
    DEMO_MONITORING_LINK,
    OpsCentre,
    mqtt_config,
    operator_key,
    ops_centre_step,
)
from posd.cli.demo_orders import order_steps, orders_config
from posd.config import Config, load_config
from posd.daemon import Daemon, build_components, prepare_state_dir, register_config_secrets
from posd.ledger import LedgerTimings
from posd.logs import setup_logging
from posd.monitoring import Monitoring
from posd.sim import (
    CARDS,
    GOOD_QR_ACCOUNT,
    AccountBook,
    LedgerSimulator,
    QrIssuer,
    SimulatedCardReader,
    SimulatedSerialScanner,
)
from protocols import srl_messages as srl

DEMO_DEADLINE_S = 60.0
STEP_TIMEOUT_S = 20.0
BENEFIT_PLUS_BPS = 500
FINAL = frozenset({"approved", "declined", "approved_offline", "forwarded", "reversed"})
QR_KINDS = ("valid", "expired", "not_yet_valid", "too_long_lived", "bad_signature", "unknown_key")
# The demo's ledger comes back at once after an outage, so reconnecting need not wait long.
DEMO_LINK = LedgerTimings(backoff_initial_s=0.2, backoff_max_s=1.0)
_POLL_S = 0.05


class StepFailed(Exception):
    """A step could not finish; the message says what was awaited and what was seen."""


def _config_text(
    directory: Path,
    mac_key: Path,
    ledger_port: int,
    reader: str,
    scanner: str,
    keys: str,
    broker_port: int | None,
    operator_public: str,
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
{mqtt_config(broker_port, operator_public)}{orders_config(broker_port)}
[api]
socket = "{directory / "api.sock"}"

[storage]
state_dir = "{directory / "state"}"

[logging]
level = "warning"
"""


def _pad(text: str, width: int) -> str:
    """`text` left-aligned in `width` terminal columns: Hangul takes two columns each."""
    columns = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(0, width - columns)


def _won(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def describe(payment: Mapping[str, Any]) -> str:
    """One payment as a line: amount, discount, what was charged, state, reason, and the card
    or account by its last 4 digits only."""
    how = payment.get("entry_mode") or payment.get("method") or "?"
    shown = payment.get("card_last4") or payment.get("account_last4")
    parts = [
        f"{_won(payment.get('amount')):>6} won",
        f"discount {_won(payment.get('discount')):>3}",
        f"charged {_won(payment.get('charged')):>6}",
        f"{payment.get('state')!s:<16}",
        f"reason {payment.get('decline_reason') or '-':<18}",
        f"{how} …{shown}" if shown else str(how),
    ]
    return "  ".join(parts)


@dataclass
class Shift:
    """The POS app and the customer of the demo, and the record of how each step went."""

    api: ApiClient
    ledger: LedgerSimulator
    reader: SimulatedCardReader
    scanner: SimulatedSerialScanner
    issuer: QrIssuer
    say: Callable[[str], None]
    results: list[tuple[str, bool]] = field(default_factory=list)
    current: str = "starting posd"
    orders_port: int | None = None
    """The demo broker's port (None: no mosquitto, the order step fails)."""

    def begin(self, title: str) -> None:
        self.current = title

    def pad(self, text: str, width: int) -> str:
        return _pad(text, width)

    def check(self, payment: Mapping[str, Any], ok: bool, note: str = "") -> None:
        self.results.append((self.current, ok))
        mark = "ok  " if ok else "FAIL"
        line = f"{mark} {len(self.results):>2}. {_pad(self.current, 30)} {describe(payment)}"
        self.say(f"{line}  {note}" if note else line)

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
        payment: dict[str, Any] = {}
        try:
            async with asyncio.timeout(STEP_TIMEOUT_S):
                while True:
                    payment = await self.api.payment(payment_id)
                    if payment["state"] in states:
                        return payment
                    await asyncio.sleep(_POLL_S)
        except TimeoutError:
            raise StepFailed(
                f"payment {payment_id} did not become {' or '.join(sorted(states))} in "
                f"{STEP_TIMEOUT_S:.0f} s (last seen: {payment.get('state', 'nothing')})"
            ) from None

    async def status(
        self, what: str, predicate: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        try:
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
                    await asyncio.sleep(_POLL_S)
        except TimeoutError:
            raise StepFailed(f"{what} did not happen in {STEP_TIMEOUT_S:.0f} s") from None

    async def reader_got(self, kind: type[srl.Message], since: int) -> None:
        """Waits until posd has sent the reader a `kind` command, after the first `since`."""
        try:
            async with asyncio.timeout(STEP_TIMEOUT_S):
                while True:
                    if any(isinstance(m, kind) for m in self.reader.received[since:]):
                        return
                    await asyncio.sleep(_POLL_S)
        except TimeoutError:
            raise StepFailed(
                f"posd sent the reader no {kind.__name__} in {STEP_TIMEOUT_S:.0f} s"
            ) from None


async def _cancel_step(shift: Shift) -> None:
    shift.begin("cancelled while waiting")
    sent_before = len(shift.reader.received)
    created = await shift.api.create_payment(7_000, "card", uuid.uuid4().hex)
    # Cancelled once the reader really is waiting for a card, as a cashier would.
    await shift.reader_got(srl.StartRead, sent_before)
    cancelled = await shift.api.cancel(created["payment_id"])
    await shift.reader_got(srl.Cancel, sent_before)
    stored = await shift.api.payment(created["payment_id"])
    shift.check(
        stored,
        cancelled["state"] == "cancelled" and stored["state"] == "cancelled",
        "the reader stopped waiting",
    )
    shift.begin("cancelled again")
    try:
        again = await shift.api.cancel(created["payment_id"])
    except ApiRequestError as exc:
        answer = f"{exc.status} {exc.code}"
        ok = False
    else:
        # A repeated cancel (a POS retrying) gets the cancelled payment, never "too late".
        answer = f"{HTTPStatus.OK.value} as {again['state']}"
        ok = again["state"] == "cancelled"
    stored = await shift.api.payment(created["payment_id"])
    shift.check(stored, ok and stored["state"] == "cancelled", f"answered {answer}")


async def _steps(shift: Shift) -> None:
    shift.begin("chip card, 혜택플러스 5 %")
    chip = await shift.card(10_000, "seoroeum", bp=True)
    shift.check(
        chip, chip["state"] == "approved" and chip["discount"] == 500 and chip["charged"] == 9_500
    )
    shift.begin("contactless card")
    tap = await shift.card(4_500, "seoroeum-contactless")
    shift.check(tap, tap["state"] == "approved" and tap["entry_mode"] == "contactless")
    shift.begin("서로e음 app QR")
    qr = await shift.qr(12_000)
    shift.check(qr, qr["state"] == "approved" and qr["charged"] == 12_000)
    # Not straight after the chip decline: the card's transaction may still be ending on the
    # reader then, and a cancel in that moment is a race for the payment engine's own tests
    # (a hang there was fixed in the payment engine), not a step of a demo that must not flake.
    await _cancel_step(shift)
    shift.begin("card without enough money")
    poor = await shift.card(50_000, "insufficient-funds")
    shift.check(
        poor, poor["state"] == "declined" and poor["decline_reason"] == "insufficient_funds"
    )
    shift.begin("refund 3,000 of payment 1")
    refund = await shift.api.refund(chip["payment_id"], 3_000, uuid.uuid4().hex)
    refund = await shift.until(refund["payment_id"], FINAL)
    shift.check(
        refund,
        refund["state"] == "approved"
        and refund["amount"] == 3_000
        and refund.get("original_payment_id") == chip["payment_id"],
    )
    shift.say("---- the ledger goes away ----")
    await shift.ledger.refuse_connections(True)
    await shift.status("posd noticing the outage", lambda s: s["ledger"]["link"] != "up")
    shift.begin("QR, ledger down")
    offline_qr = await shift.qr(8_000)
    shift.check(offline_qr, offline_qr["state"] == "approved_offline")
    shift.begin("contactless, ledger down")
    offline_tap = await shift.card(3_000, "seoroeum-contactless")
    shift.check(offline_tap, offline_tap["state"] == "approved_offline")
    saf = await shift.status("two advices queued", lambda s: s["saf"]["pending"] == 2)
    shift.say(f"     store-and-forward queue: {saf['saf']['pending']} advices waiting")
    shift.say("---- the ledger is back ----")
    await shift.ledger.refuse_connections(False)
    for title, payment in (("QR advice", offline_qr), ("contactless advice", offline_tap)):
        shift.begin(f"{title} forwarded")
        forwarded = await shift.until(payment["payment_id"], frozenset({"forwarded"}))
        shift.check(forwarded, forwarded["state"] == "forwarded")
    charged = sum(p["charged"] for p in (chip, tap, qr, offline_qr, offline_tap))
    totals = await shift.api.totals()
    approved, refunded = totals["approved"], totals["refunded"]
    behaved = (
        approved["count"] == 5
        and approved["charged"] == charged
        and refunded == {"count": 1, "amount": 3_000}
        and totals["net_charged"] == charged - 3_000
    )
    shift.results.append(("today's totals", behaved))
    shift.say(
        f"{'ok  ' if behaved else 'FAIL'} {len(shift.results)}. today: "
        f"{approved['count']} payments, {approved['charged']:,} won charged; "
        f"{refunded['count']} refund, {refunded['amount']:,} won; "
        f"net {totals['net_charged']:,} won"
    )
    await order_steps(shift, shift.api, shift.orders_port)


# ---- --interactive --------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    verb: Literal["card", "qr", "ledger", "help", "quit"]
    arg: str = ""


class CommandError(ValueError):
    """A stdin line that is not a demo command; the message says what would be."""


COMMANDS_HELP = (
    f"card [NAME]     present a card at the reader ({', '.join(CARDS)}; default seoroeum)\n"
    f"  qr [KIND]       show a 서로e음 QR at the scanner ({', '.join(QR_KINDS)}; default valid)\n"
    "  ledger down|up  take the ledger's network away or bring it back\n"
    "  help, quit"
)


def parse_command(line: str) -> Command | None:
    """One stdin line as a Command; None for a blank line. Raises CommandError."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise CommandError(f"cannot read {line.strip()!r}: {exc}") from None
    if not words:
        return None
    verb, args = words[0].lower(), words[1:]
    if len(args) > 1:
        raise CommandError(f"{verb} takes at most one word, not {len(args)}")
    arg = args[0] if args else ""
    if verb == "card":
        name = arg or "seoroeum"
        if name not in CARDS:
            raise CommandError(f"no test card {name!r}; cards: {', '.join(CARDS)}")
        return Command("card", name)
    if verb == "qr":
        kind = arg or "valid"
        if kind not in QR_KINDS:
            raise CommandError(f"no QR kind {kind!r}; kinds: {', '.join(QR_KINDS)}")
        return Command("qr", kind)
    if verb == "ledger":
        if arg not in ("down", "up"):
            raise CommandError("ledger takes down or up")
        return Command("ledger", arg)
    if verb == "help" and not arg:
        return Command("help")
    if verb == "quit" and not arg:
        return Command("quit")
    if verb in ("help", "quit"):
        raise CommandError(f"{verb} takes no word")
    raise CommandError(f"no command {verb!r}; commands: card, qr, ledger, help, quit")


def _curl_lines(socket: Path) -> str:
    curl = f"curl --unix-socket {socket}"
    return f"""\
Try, from another terminal:
  {curl} http://posd/v1/status
  {curl} -N http://posd/v1/events
  {curl} -X POST http://posd/v1/payments -H 'Content-Type: application/json' \\
       -d '{{"amount": 12000, "method": "any", "idempotency_key": "try-1", "benefit_plus": true}}'
  {curl} http://posd/v1/payments/PAYMENT_ID
  {curl} -X POST http://posd/v1/payments/PAYMENT_ID/cancel
  {curl} -X POST http://posd/v1/payments/PAYMENT_ID/refund -H 'Content-Type: application/json' \\
       -d '{{"amount": 1000}}'
  {curl} http://posd/v1/totals
  {curl} http://posd/v1/orders
  {curl} -X POST http://posd/v1/orders/ORDER_ID/ack
Then play the customer here, one command a line:
  {COMMANDS_HELP}"""


async def _play(shift: Shift, command: Command) -> None:
    match command.verb:
        case "card":
            shift.reader.present(command.arg)
            shift.say(f"card {command.arg} at the reader: the next read finds it")
        case "qr":
            await shift.scanner.scan(getattr(shift.issuer, command.arg)(GOOD_QR_ACCOUNT))
            shift.say(f"{command.arg} QR scanned")
        case "ledger":
            await shift.ledger.refuse_connections(command.arg == "down")
            shift.say(f"ledger {command.arg}")
        case "help":
            shift.say(f"  {COMMANDS_HELP}")


async def _lines(fd: int) -> AsyncIterator[str]:
    """The lines of `fd` as they come, without blocking the loop nor making the fd (often
    the terminal stdout shares) non-blocking; ends at end of file. Raises OSError or
    ValueError when `fd` cannot be watched (a regular file, /dev/null)."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    pending = bytearray()

    def readable() -> None:
        chunk = os.read(fd, 4096)
        if not chunk:
            loop.remove_reader(fd)
            lines.put_nowait(None)
            return
        pending.extend(chunk)
        while (end := pending.find(b"\n")) >= 0:
            lines.put_nowait(pending[:end].decode("utf-8", "replace"))
            del pending[: end + 1]

    loop.add_reader(fd, readable)
    try:
        while (line := await lines.get()) is not None:
            yield line
    finally:
        loop.remove_reader(fd)


async def _commands(shift: Shift, fd: int) -> None:
    """Plays stdin's commands until quit; with no stdin to read, or after its end, the demo
    keeps running until Ctrl-C or SIGTERM."""
    try:
        async for line in _lines(fd):
            try:
                command = parse_command(line)
            except CommandError as exc:
                shift.say(f"? {exc}")
                continue
            if command is not None and command.verb == "quit":
                return
            if command is not None:
                await _play(shift, command)
    except (OSError, ValueError):
        pass
    await asyncio.Event().wait()


async def _print_changes(shift: Shift) -> None:
    async with shift.api.events() as stream:
        async for event in stream:
            payment, order = event.get("payment"), event.get("order")
            if event.get("type") == "payment" and isinstance(payment, dict):
                shift.say(f"     {payment['payment_id']}  {describe(payment)}")
            elif event.get("type") == "order" and isinstance(order, dict):
                shift.say(f"     order {order['order_id'] or '-'}  {order['state']}")


async def _interactive(shift: Shift, socket: Path, serving: asyncio.Task[int], fd: int) -> None:
    shift.say(f"still running: POS API on {socket}; quit or Ctrl-C ends the demo")
    shift.say(_curl_lines(socket))
    tasks = {
        asyncio.create_task(_commands(shift, fd)),
        asyncio.create_task(_print_changes(shift)),
    }
    try:
        # serving ends on Ctrl-C and SIGTERM: the daemon handles both by stopping.
        await asyncio.wait({*tasks, serving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, (ApiUnavailable, ApiRequestError)):
            shift.say(f"the event stream ended: {result}")
        elif isinstance(result, Exception):
            raise result


# ---- the run --------------------------------------------------------------------------------


async def run_demo(
    interactive: bool = False,
    out: Callable[[str], None] = print,
    commands_fd: int = 0,
    *,
    accounts: AccountBook | None = None,
) -> int:
    """The demo's exit status; `commands_fd` is read for commands when interactive.
    `accounts` replaces the reference ledger's book (tests use it to make a step fail)."""
    with tempfile.TemporaryDirectory(prefix="posd-demo-") as tmp:
        directory = Path(tmp)
        issuer = QrIssuer()
        mac_key = secrets.token_bytes(32)
        mac_key_file = directory / "mac.key"
        mac_key_file.write_text(mac_key.hex() + "\n")
        mac_key_file.chmod(0o600)
        key, public = operator_key()
        async with (
            LedgerSimulator(mac_key=mac_key, accounts=accounts) as ledger,
            SimulatedCardReader(link=directory / "posd-reader") as reader,
        ):
            with SimulatedSerialScanner() as scanner, contextlib.ExitStack() as stack:
                try:
                    broker_port: int | None = stack.enter_context(DemoBroker(directory)).port
                except BrokerMissing as exc:
                    out(f"posd demo: {exc}")
                    broker_port = None
                config_path = directory / "posd.toml"
                config_path.write_text(
                    _config_text(
                        directory,
                        mac_key_file,
                        ledger.port,
                        reader.port,
                        scanner.port,
                        issuer.platform_keys_toml,
                        broker_port,
                        public,
                    )
                )
                config = load_config(config_path)
                register_config_secrets(config)
                shift_parts = (ledger, reader, scanner, issuer)
                ops = None
                if broker_port is not None:
                    ops = OpsCentre(broker_port, f"posd/{config.terminal.id}", key, out)
                return await _serve_shift(
                    config, config_path, shift_parts, interactive, out, commands_fd, ops
                )


async def _serve_shift(
    config: Config,
    config_path: Path,
    parts: tuple[LedgerSimulator, SimulatedCardReader, SimulatedSerialScanner, QrIssuer],
    interactive: bool,
    out: Callable[[str], None],
    commands_fd: int,
    ops: OpsCentre | None = None,
) -> int:
    started = time.monotonic()
    payments = {"ledger_timings": DEMO_LINK, "api_group": None}
    build = functools.partial(
        build_components, payments=payments, monitoring_link=DEMO_MONITORING_LINK
    )
    daemon = Daemon(config, config_path, prepare_state_dir(config.storage.state_dir), build=build)
    watching = asyncio.create_task(ops.link.run()) if ops is not None else None
    if ops is not None:
        # The operations centre listens before posd starts: it misses nothing.
        async with asyncio.timeout(STEP_TIMEOUT_S):
            await ops.link.wait_up()
    serving = asyncio.create_task(daemon.serve())
    try:
        async with ApiClient(config.api.socket) as api:
            shift = Shift(api, *parts, say=out, orders_port=ops.port if ops else None)
            out(
                "posd demo: simulated reader, scanner and ledger; posd serving on "
                f"{config.api.socket}"
            )
            broke = await _run_steps(shift)
            if broke is None:
                await ops_centre_step(shift, api, ops, _events_published(daemon))
            failed = [title for title, ok in shift.results if not ok]
            behaved = broke is None and not failed
            elapsed = time.monotonic() - started
            if broke is not None:
                out(f"FAIL {shift.current}: {broke}")
            out(
                f"{len(shift.results) - len(failed)} of {len(shift.results)} steps behaved"
                f"{'' if broke is None else ', then the shift broke off'}, in {elapsed:.1f} s"
            )
            if interactive and not serving.done():
                await _interactive(shift, config.api.socket, serving, commands_fd)
            return os.EX_OK if behaved else os.EX_SOFTWARE
    finally:
        if ops is not None and watching is not None:
            ops.link.stop()  # posd's own stop is not the shift's
            await watching
        daemon.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            await serving


def _events_published(daemon: Daemon) -> Callable[[], int] | None:
    """How many monitoring events posd has published so far; None: it runs no monitoring."""
    if not isinstance(daemon.supervisor.component(Monitoring.name), Monitoring):
        return None

    def published() -> int:
        component = daemon.supervisor.component(Monitoring.name)
        return component.events_sent if isinstance(component, Monitoring) else 0

    return published


async def _run_steps(shift: Shift) -> str | None:
    """Runs the shift within the demo's deadline; what broke it off, or None."""
    try:
        async with asyncio.timeout(DEMO_DEADLINE_S):
            await shift.status(
                "posd ready (ledger up, reader and scanner ready)",
                lambda s: (
                    s["ledger"]["link"] == "up"
                    and s["devices"]["card_reader"]["state"] == "ready"
                    and s["devices"]["qr_scanner"]["state"] == "ready"
                ),
            )
            await _steps(shift)
    except StepFailed as exc:
        return str(exc)
    except TimeoutError:
        return f"the shift did not finish in {DEMO_DEADLINE_S:.0f} s"
    except (ApiUnavailable, ApiRequestError) as exc:
        return f"the local API: {exc}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="posd demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--interactive",
        action="store_true",
        help="keep running after the shift, API open, customer commands on stdin",
    )
    args = parser.parse_args(argv)
    setup_logging(os.environ.get("POSD_DEMO_LOG", "warning"), "text")

    def say(line: str) -> None:
        print(line, flush=True)

    # No stdin at all (closed by the caller) leaves nothing to read commands from.
    stdin = sys.stdin.fileno() if sys.stdin is not None else -1
    return asyncio.run(run_demo(args.interactive, say, stdin))


if __name__ == "__main__":
    sys.exit(main())
