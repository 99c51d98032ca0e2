"""`posd demo`'s scripted shift in this process: every step kind, its line, its checks; a
misbehaving ledger fails it; the interactive commands and what bad ones get."""

from __future__ import annotations

import re

import pytest

from posd.cli.demo import CommandError, describe, parse_command, run_demo
from posd.sim.ledger_accounts import (
    DEMO_QR_ACCOUNT,
    GOOD_CARD,
    GOOD_QR_ACCOUNT,
    POOR_CARD,
    Account,
    AccountBook,
    default_accounts,
)

pytestmark = pytest.mark.timeout(90)

FULL_NUMBERS = (GOOD_CARD, POOR_CARD, GOOD_QR_ACCOUNT, DEMO_QR_ACCOUNT)
# A QR token is base64 of a TLV that starts 85 05 "CPV01": its text starts "hQVDUFYwM".
QR_TOKEN = re.compile(r"hQVDUFYwM[A-Za-z0-9+/=]{20,}")


def _step(lines: list[str], title: str) -> str:
    found = [line for line in lines if title in line]
    assert len(found) == 1, f"{title!r} in {found}"
    return found[0]


async def test_demo_shift_behaves_step_by_step() -> None:
    lines: list[str] = []
    assert await run_demo(out=lines.append) == 0, "\n".join(lines)
    text = "\n".join(lines)
    assert re.fullmatch(r"16 of 16 steps behaved, in \d+\.\d s", lines[-1]), text
    assert not [line for line in lines if line.startswith("FAIL")], text
    step_lines = [line for line in lines if line.startswith("ok ")]
    assert len(step_lines) == 16, text
    for line in step_lines[:11]:
        # Each payment step shows amount, discount, charged, state and reason.
        assert re.search(r" won  discount +[\d,]+  charged +[\d,]+  \w+ +reason \S+", line), line

    chip = _step(lines, "chip card, 혜택플러스 5 %")
    assert re.search(r"10,000 won  discount 500  charged  9,500  approved .* chip …0001", chip)
    tap = _step(lines, "contactless card")
    assert re.search(r"4,500 won .* approved .* contactless …0001", tap)
    assert " approved " in _step(lines, "서로e음 app QR")
    assert re.search(r"7,000 won .* cancelled .*reader stopped", _step(lines, "cancelled while"))
    assert re.search(r" cancelled .* answered 200 as cancelled", _step(lines, "cancelled again"))
    declined = _step(lines, "card without enough money")
    assert re.search(r"50,000 won .* declined +reason insufficient_funds +chip …0002", declined)
    refund = _step(lines, "refund 3,000 of payment 1")
    assert re.search(r"3,000 won  discount +0  charged +3,000  approved ", refund)
    assert "approved_offline" in _step(lines, "QR, ledger down")
    assert "approved_offline" in _step(lines, "contactless, ledger down")
    assert " forwarded " in _step(lines, "QR advice forwarded")
    assert " forwarded " in _step(lines, "contactless advice forwarded")
    assert "net 34,000 won" in _step(lines, "today:")
    # 배달서구: through the demo's own Mosquitto, the chime on ALSA (null device or card).
    arrived = _step(lines, "배달서구 order arrives")
    assert re.search(r"2 items  30,000 won  alerting, chime on alsa", arrived), arrived
    assert "acknowledged after" in _step(lines, "the POS acknowledges it")
    missed = _step(lines, "an order nobody takes")
    assert re.search(r"missed after \d+\.\d s .*order event \"missed\"", missed), missed
    # The operations centre's view: a line per monitoring event, then the retained state.
    assert re.search(r"^ok +16\. operations centre +\d+ events, online, state of ", text, re.M)
    events = [line for line in lines if line.startswith("     mqtt  ")]
    assert len([e for e in events if " payment " in e]) >= 20, text
    assert any(re.search(r"mqtt  ledger +link down", e) for e in events), text
    assert any(re.search(r"mqtt  ledger +link up: signed on", e) for e in events), text
    assert any("card_reader ready: connected" in e for e in events), text
    assert any("signed diagnostics command answered ok" in e for e in events), text
    # The order steps' events reach the operations centre too, the chime's output with them.
    assert any(re.search(r"mqtt  order +\S+ alerting$", e) for e in events), text
    assert any(re.search(r"mqtt  order +\S+ acknowledged after \d", e) for e in events), text
    assert any(re.search(r"mqtt  order +\S+ missed after \d", e) for e in events), text
    assert any("audio ready: the chime plays on alsa" in e for e in events), text
    retained = lines.index(next(x for x in lines if "as the operations centre sees it" in x))
    assert "(retained): online" in lines[retained]
    assert (
        lines[retained + 1].startswith("     posd ")
        and "on terminal T0000001" in lines[retained + 1]
    )
    assert "       today        5 approved, 1 declined, 37,000 won" in lines[retained + 2 :]
    for secret in FULL_NUMBERS:
        assert secret not in text
    assert not QR_TOKEN.search(text)


async def test_a_step_that_misbehaves_fails_the_demo() -> None:
    # The chip card's account can pay 5,000 won, not the 9,500 the first step charges: that
    # step is declined, and the refund of it that follows cannot be made at all.
    book = AccountBook(
        Account(GOOD_CARD, "card", 5_000, "3012") if a.number == GOOD_CARD else a
        for a in default_accounts()
    )
    lines: list[str] = []
    assert await run_demo(out=lines.append, accounts=book) == 70
    text = "\n".join(lines)
    assert re.search(r"^FAIL +1\. chip card.* declined +reason insufficient_funds", text, re.M)
    assert re.search(r"^FAIL refund 3,000 of payment 1: the local API: 409 ", text, re.M), text
    assert re.fullmatch(
        r"5 of 6 steps behaved, then the shift broke off, in \d+\.\d s", lines[-1]
    ), text
    for secret in FULL_NUMBERS:
        assert secret not in text


@pytest.mark.parametrize(
    ("line", "verb", "arg"),
    [
        ("card", "card", "seoroeum"),
        ("  card insufficient-funds  ", "card", "insufficient-funds"),
        ("CARD foreign", "card", "foreign"),
        ("qr", "qr", "valid"),
        ("qr expired", "qr", "expired"),
        ("ledger down", "ledger", "down"),
        ("ledger up", "ledger", "up"),
        ("help", "help", ""),
        ("quit", "quit", ""),
    ],
)
def test_commands(line: str, verb: str, arg: str) -> None:
    command = parse_command(line)
    assert command is not None
    assert (command.verb, command.arg) == (verb, arg)


def test_a_blank_line_is_no_command() -> None:
    assert parse_command("   \t") is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("pay 1000", "no command 'pay'; commands: card, qr, ledger, help, quit"),
        ("card visa", "no test card 'visa'; cards: seoroeum, "),
        ("qr stolen", "no QR kind 'stolen'; kinds: valid, "),
        ("ledger", "ledger takes down or up"),
        ("ledger sideways", "ledger takes down or up"),
        ("card seoroeum expired", "card takes at most one word, not 2"),
        ("quit now", "quit takes no word"),
        ("help me", "help takes no word"),
        ('card "seoroeum', "cannot read 'card \"seoroeum': No closing quotation"),
    ],
)
def test_bad_commands_are_refused_saying_why(line: str, message: str) -> None:
    with pytest.raises(CommandError) as refused:
        parse_command(line)
    assert str(refused.value).startswith(message)


def test_a_payment_line_from_a_partial_object() -> None:
    # A field the API did not send shows as "?", never as a crash of the demo.
    line = describe({"state": "waiting_for_card", "method": "any"})
    assert " ".join(line.split()) == "? won discount ? charged ? waiting_for_card reason - any"
