"""The reference ledger's rules, its accounts file, and `posd ledger-sim` as a process."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from posd.cli import ledger_sim as ledger_sim_cli
from posd.sim.ledger import LedgerEvent, LedgerRules, LedgerSimulator
from posd.sim.ledger_accounts import (
    BLOCKED_CARD,
    GOOD_CARD,
    GOOD_QR_ACCOUNT,
    LOW_LIMIT_CARD,
    POOR_QR_ACCOUNT,
    Account,
    AccountBook,
    AccountsFileError,
)
from protocols.ber_tlv import Tlv, decode_tlv, encode_tlv
from protocols.iso8583_profile import decode_message, encode_message
from protocols.ledger_fields import AdditionalData
from protocols.ledger_messages import (
    CardPayer,
    LedgerRequest,
    NetworkResponse,
    OriginalData,
    QrPayer,
    build_advice,
    build_purchase,
    build_refund,
    build_reversal,
    decode_response,
    encode,
    network_request,
)
from protocols.length_prefix import LengthPrefixDecoder, frame

NOW = dt.datetime(2026, 11, 25, 3, 4, 5, tzinfo=dt.UTC)
TERMINAL = "T0000001"
MERCHANT = "M00000000000001"
MAC_KEY = bytes(range(32))
QR_TEXT = "hQVDUFYwMWEA"
REPO = Path(__file__).resolve().parents[3]


def rules(**kwargs: object) -> LedgerRules:
    return LedgerRules(AccountBook.default(), lambda: NOW, **kwargs)  # type: ignore[arg-type]


_stan = iter(range(1, 1_000_000))


def purchase(pan: str = GOOD_CARD, amount: int = 10_000, **extra: object) -> LedgerRequest:
    payer: CardPayer | QrPayer = (
        QrPayer(pan, QR_TEXT) if pan.startswith("94101") else CardPayer("chip", pan, "3012")
    )
    request = build_purchase(
        stan=next(_stan), transmitted_at=NOW, local_now=NOW, amount=amount,
        terminal_id=TERMINAL, merchant_id=MERCHANT, payer=payer,
    )  # fmt: skip
    return replace(request, **extra) if extra else request  # type: ignore[arg-type]


def refund(original: LedgerRequest, rrn: str, amount: int) -> LedgerRequest:
    return build_refund(
        stan=next(_stan), transmitted_at=NOW, local_now=NOW, amount=amount, terminal_id=TERMINAL,
        merchant_id=MERCHANT, original=OriginalData.of(original), rrn=rrn,
    )  # fmt: skip


def reversal(original: LedgerRequest) -> LedgerRequest:
    return build_reversal(original, stan=next(_stan), transmitted_at=NOW, local_now=NOW)


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (purchase(BLOCKED_CARD), "05"),
        (purchase(LOW_LIMIT_CARD, 10_001), "61"),
        (purchase(GOOD_QR_ACCOUNT, 1_000), "00"),
        (purchase(POOR_QR_ACCOUNT, 3_001), "51"),
        (replace(purchase(GOOD_CARD), entry_mode="qr", expiry=None, icc=None,
                 additional=AdditionalData(qr_token=QR_TEXT)), "57"),  # a card as a QR account
        (replace(purchase(GOOD_QR_ACCOUNT), additional=AdditionalData()), "30"),  # QR with no QT
        (purchase(amount=9_500, additional=AdditionalData(500, 500)), "00"),  # 10,000 at 5 %
        (purchase(amount=9_500, additional=AdditionalData(500, 501)), "13"),
        (purchase(amount=9_000, additional=AdditionalData(1_000, 1_000)), "13"),  # rate over 7 %
    ],
)  # fmt: skip
def test_purchase_codes(request_: LedgerRequest, code: str) -> None:
    assert rules().process(request_, mac_valid=True).response_code == code


def test_unknown_terminal_is_58() -> None:
    assert rules(terminals=frozenset({"T0000009"})).process(purchase(), True).response_code == "58"


def test_bad_mac_is_63_and_not_acted_on_nor_remembered() -> None:
    ledger = rules()
    request = purchase(amount=1_000)
    assert ledger.process(request, mac_valid=False).response_code == "63"
    assert ledger.balance(GOOD_CARD) == 1_000_000
    # The same message with a good MAC is then processed as new.
    assert ledger.process(request, mac_valid=True).approved
    assert ledger.balance(GOOD_CARD) == 999_000


def test_same_stan_and_field7_for_another_message_is_94() -> None:
    ledger = rules()
    request = purchase(amount=1_000)
    first = ledger.process(request, True)
    assert ledger.process(request, True) == first
    assert ledger.process(replace(request, amount=2_000), True).response_code == "94"
    assert ledger.balance(GOOD_CARD) == 999_000


def test_refund_rules() -> None:
    ledger = rules()
    original = purchase(amount=10_000)
    rrn = ledger.process(original, True).rrn
    assert rrn is not None
    assert ledger.process(refund(original, "999999999999", 1_000), True).response_code == "12"
    assert ledger.process(refund(purchase(), rrn, 1_000), True).response_code == "12"  # wrong 90
    first = refund(original, rrn, 4_000)
    first_answer = ledger.process(first, True)
    assert first_answer.approved and ledger.balance(GOOD_CARD) == 994_000
    assert ledger.process(refund(original, rrn, 6_001), True).response_code == "13"
    # Reversing the refund takes the money back and frees the refundable amount again.
    assert ledger.process(reversal(first), True).approved
    assert ledger.balance(GOOD_CARD) == 990_000
    assert ledger.process(refund(original, rrn, 10_000), True).approved
    assert ledger.balance(GOOD_CARD) == 1_000_000
    # A refund cannot itself be refunded, and a reversed payment cannot be refunded.
    assert first_answer.rrn is not None
    assert ledger.process(refund(first, first_answer.rrn, 1), True).response_code == "12"
    other = purchase(amount=5_000)
    other_rrn = ledger.process(other, True).rrn or ""
    assert ledger.process(reversal(other), True).approved
    assert ledger.process(refund(other, other_rrn, 1_000), True).response_code == "12"


def test_a_payment_reversed_before_it_arrived_is_never_booked() -> None:
    ledger = rules()
    original = purchase(amount=3_000)
    assert ledger.process(reversal(original), True).approved
    assert ledger.process(original, True).response_code == "12"
    assert ledger.balance(GOOD_CARD) == 1_000_000


def test_reversal_rules() -> None:
    ledger = rules()
    declined = purchase(BLOCKED_CARD)
    assert ledger.process(declined, True).response_code == "05"
    assert ledger.process(reversal(declined), True).approved  # nothing moved, nothing to undo
    original = purchase(amount=3_000)
    assert ledger.process(original, True).approved
    wrong_amount = replace(reversal(original), amount=2_000)
    assert ledger.process(wrong_amount, True).response_code == "13"
    assert ledger.balance(GOOD_CARD) == 997_000
    assert ledger.process(reversal(original), True).approved
    assert ledger.process(reversal(original), True).approved  # a second reversal: already undone
    assert ledger.balance(GOOD_CARD) == 1_000_000


def test_advice_books_even_below_zero_and_unknown_account_is_14() -> None:
    ledger = rules()
    advice = build_advice(purchase(POOR_QR_ACCOUNT, 5_000), "Y10001")
    answer = ledger.process(advice, True)
    assert answer.approved and answer.auth_code == "Y10001" and answer.mti == "0230"
    assert ledger.balance(POOR_QR_ACCOUNT) == -2_000
    unknown = build_advice(purchase("9410999999999999", 5_000), "Y10002")
    assert ledger.process(unknown, True).response_code == "14"
    # An advice can be reversed like a payment.
    assert ledger.process(reversal(advice), True).approved
    assert ledger.balance(POOR_QR_ACCOUNT) == 3_000


def test_expiry_is_judged_by_the_ledger_clock() -> None:
    book = AccountBook([Account("9410000000000099", "card", 10_000, "2611")])
    november = LedgerRules(book, lambda: NOW)
    assert november.process(purchase("9410000000000099", 1_000), True).approved
    december = LedgerRules(book, lambda: NOW.replace(month=12))
    assert december.process(purchase("9410000000000099", 1_000), True).response_code == "54"


async def test_server_answers_only_the_terminal_that_signed_on() -> None:
    async with LedgerSimulator(mac_key=MAC_KEY) as sim:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        decoder = LengthPrefixDecoder()

        async def exchange(message: bytes) -> bytes:
            writer.write(frame(message))
            async with asyncio.timeout(5):
                while not (answers := decoder.feed(await reader.read(4096))):
                    pass
            return answers[0]

        before = await exchange(encode(purchase(amount=1_000), MAC_KEY))
        assert decode_response(before, MAC_KEY).message.response_code == "91"
        sign_on = network_request("001", stan=1, transmitted_at=NOW, terminal_id=TERMINAL)
        await exchange(encode(sign_on, MAC_KEY))
        other = replace(purchase(amount=1_000), terminal_id="T0000002")
        answer = decode_response(await exchange(encode(other, MAC_KEY)), MAC_KEY).message
        assert answer.response_code == "58"
        assert sim.rules.balance(GOOD_CARD) == 1_000_000
        writer.close()


# ---- like a real host: echoes, issuer data, its own clock ----------------------------------

ARQC_ICC = encode_tlv([Tlv(0x9F26, bytes.fromhex("1122334455667788")), Tlv(0x9F27, b"\x80"),
                       Tlv(0x9F36, b"\x00\x07")])  # fmt: skip
SCRIPT = encode_tlv([Tlv(0x72, encode_tlv([Tlv(0x9F18, bytes(4)), Tlv(0x86, b"\x84\x24")]))])


def chip(pan: str = GOOD_CARD, amount: int = 10_000, mode: str = "chip") -> LedgerRequest:
    return purchase(pan, amount, entry_mode=mode, icc=ARQC_ICC)


@pytest.mark.parametrize(
    "request_",
    [
        chip(),
        purchase(GOOD_QR_ACCOUNT, 1_000),
        purchase(amount=9_500, additional=AdditionalData(500, 500)),
        replace(purchase(), entry_mode="magstripe", icc=None, track2=GOOD_CARD + "=30121010000"),
    ],
)
def test_answers_echo_every_field_their_request_carried(request_: LedgerRequest) -> None:
    answer = rules().process(request_, True)
    assert answer.approved
    sent = answer.fields()
    for number, value in request_.fields().items():
        if number != 55:  # a chip payment's 55 is the issuer's in the 0210
            assert sent[number] == value, number
    assert set(sent) - set(request_.fields()) <= {37, 38, 39, 55}


def test_a_refund_and_a_reversal_echo_37_and_90() -> None:
    ledger = rules()
    original = purchase(amount=4_000)
    rrn = ledger.process(original, True).rrn or ""
    refunded = ledger.process(refund(original, rrn, 1_000), True)
    assert refunded.approved and refunded.rrn != rrn  # its own RRN, in place of the echo
    assert dict(refunded.echoed)[90] == refund(original, rrn, 1).fields()[90]
    declined = ledger.process(refund(original, rrn, 5_000), True)
    assert declined.response_code == "13" and declined.rrn == rrn  # the echo of the request
    undone = ledger.process(reversal(original), True)
    assert undone.approved and 90 in dict(undone.echoed)
    assert decode_message(encode(undone, MAC_KEY)).mac_field == 128


def test_echo_none_answers_only_what_identifies_the_request() -> None:
    answer = rules(echo=False).process(chip(), True)
    assert set(answer.fields()) == {11, 37, 38, 39, 41, 55}
    declined = rules(echo=False).process(purchase(BLOCKED_CARD), True)
    assert set(declined.fields()) == {11, 39, 41}


def test_issuer_data_for_chip_payments() -> None:
    approved = rules().process(chip(), True)
    (item,) = decode_tlv(approved.issuer_data)
    assert item.tag == 0x91 and len(item.value) == 10 and item.value.endswith(b"00")  # ARPC, ARC
    declined = rules().process(chip(BLOCKED_CARD), True)
    assert decode_tlv(declined.issuer_data)[0].value.endswith(b"05")
    scripted = rules(issuer_script=SCRIPT).process(chip(), True)
    assert [t.tag for t in decode_tlv(scripted.issuer_data)] == [0x91, 0x72]
    assert [t.tag for t in decode_tlv(rules(issuer_script=SCRIPT).process(
        chip(BLOCKED_CARD), True).issuer_data)] == [0x91]  # fmt: skip
    # Contactless and QR skip COMPLETE: their 0210 carries no issuer data.
    contactless = rules().process(chip(mode="contactless"), True)
    assert contactless.issuer_data == b"" and contactless.icc == ARQC_ICC  # the echo
    assert rules().process(purchase(GOOD_QR_ACCOUNT, 1_000), True).issuer_data == b""
    with pytest.raises(ValueError, match="71 or 72"):
        rules(issuer_script=encode_tlv([Tlv(0x91, bytes(10))]))


def test_a_repeat_gets_the_first_answer_byte_for_byte() -> None:
    ledger = rules()
    advice = build_advice(chip(amount=3_000), "Y10001")
    first = ledger.process(advice, True)
    again = ledger.process(replace(advice, mti="0221"), True)
    assert again == first and encode(again, MAC_KEY) == encode(first, MAC_KEY)
    assert ledger.balance(GOOD_CARD) == 997_000


class Terminal:
    """A raw connection to the simulator, signed on as TERMINAL."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = LengthPrefixDecoder()
        self.answers: list[bytes] = []
        self.stans = iter(range(900_001, 999_999))

    @classmethod
    async def connect(cls, sim: LedgerSimulator) -> Terminal:
        terminal = cls(*await asyncio.open_connection("127.0.0.1", sim.port))
        sign_on = network_request("001", stan=next(terminal.stans), transmitted_at=NOW,
                                  terminal_id=TERMINAL)  # fmt: skip
        terminal.send(encode(sign_on, MAC_KEY))
        await terminal.receive(1)
        return terminal

    def send(self, message: bytes) -> None:
        self.writer.write(frame(message))

    async def receive(self, count: int) -> list[bytes]:
        async with asyncio.timeout(5):
            while len(self.answers) < count:
                self.answers += self.decoder.feed(await self.reader.read(4096))
        taken, self.answers = self.answers[:count], self.answers[count:]
        return taken


async def test_the_0810_carries_the_ledgers_own_clock() -> None:
    async with LedgerSimulator(mac_key=MAC_KEY, clock=lambda: NOW, clock_offset_s=45) as sim:
        terminal = await Terminal.connect(sim)
        sim.clock_offset_s = -31.5
        echo = network_request("301", stan=5, transmitted_at=NOW, terminal_id=TERMINAL)
        terminal.send(encode(echo, MAC_KEY))
        answer = decode_response((await terminal.receive(1))[0], MAC_KEY).message
        assert isinstance(answer, NetworkResponse) and answer.transmission == "1125030333"
        assert answer.clock_skew_s(NOW) == -32.0  # field 7 has whole seconds
        terminal.writer.close()


async def test_listeners_see_arrival_before_the_ledger_acts_and_answers_once_written() -> None:
    async with LedgerSimulator(mac_key=MAC_KEY) as sim:
        terminal = await Terminal.connect(sim)
        request = purchase(amount=2_000)
        balances: list[tuple[str, str, int | None]] = []
        hold: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def listener(event: LedgerEvent) -> asyncio.Future[None] | None:
            if event.stan == request.stan:
                balances.append((event.kind, event.mti, sim.rules.balance(GOOD_CARD)))
                return hold if event.kind == "received" else None
            return None

        def broken(event: LedgerEvent) -> None:
            raise RuntimeError("a test's listener failing")

        sim.add_listener(broken)
        remove = sim.add_listener(listener)
        terminal.send(encode(request, MAC_KEY))
        await sim.wait_event(lambda e: e.kind == "received" and e.stan == request.stan)
        # Held at arrival: not acted on, not answered.
        assert balances == [("received", "0200", 1_000_000)]
        assert sim.rules.balance(GOOD_CARD) == 1_000_000
        hold.set_result(None)
        (raw,) = await terminal.receive(1)
        event = await sim.wait_event(lambda e: e.kind == "answered" and e.stan == request.stan)
        assert (event.mti, event.response_code) == ("0210", "00")
        assert balances[-1] == ("answered", "0210", 998_000)
        assert decode_response(raw, MAC_KEY).mac_valid
        assert json.loads(event.as_json()) == {
            "kind": "answered", "mti": "0210", "stan": request.stan, "response_code": "00"
        }  # fmt: skip
        remove()
        terminal.send(encode(purchase(amount=1), MAC_KEY))
        await terminal.receive(1)
        assert len(balances) == 2
        terminal.writer.close()


async def test_latency_delays_every_answer_and_keeps_their_order() -> None:
    async with LedgerSimulator(mac_key=MAC_KEY, latency_s=0.3) as sim:
        terminal = await Terminal.connect(sim)
        requests = [purchase(amount=100 + n) for n in range(4)]
        loop = asyncio.get_running_loop()
        started = loop.time()
        for request in requests:
            terminal.send(encode(request, MAC_KEY))
        answers = [decode_response(raw, MAC_KEY).message for raw in await terminal.receive(4)]
        assert loop.time() - started >= 0.29  # a lower bound: never early
        assert [a.stan for a in answers] == [r.stan for r in requests]
        terminal.writer.close()


async def test_a_missing_mac_is_63_and_duplicates_are_sent_twice() -> None:
    async with LedgerSimulator(mac_key=MAC_KEY) as sim:
        terminal = await Terminal.connect(sim)
        unsigned = purchase(amount=500)
        terminal.send(encode_message("0200", unsigned.fields()))
        answer = decode_response((await terminal.receive(1))[0], MAC_KEY)
        assert answer.mac_valid and answer.message.response_code == "63"
        assert sim.rules.balance(GOOD_CARD) == 1_000_000
        sim.faults.duplicate = True
        terminal.send(encode(purchase(amount=500), MAC_KEY))
        first, second = await terminal.receive(2)
        assert first == second and sim.rules.balance(GOOD_CARD) == 999_500
        terminal.writer.close()


# ---- accounts file ---------------------------------------------------------------------


def test_accounts_file(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps({"accounts": [
        {"number": "9410000000000001", "balance": 50, "expiry": "3012"},
        {"number": "9410100000000009", "kind": "qr", "balance": 7, "blocked": True, "limit": 5},
    ]}))  # fmt: skip
    book = AccountBook.from_file(path)
    assert len(book) == 2
    qr = book.get("9410100000000009")
    assert qr is not None and qr.kind == "qr" and qr.blocked and qr.limit == 5
    assert "9410100000000009" not in repr(qr)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not UTF-8 JSON"),
        ("[]", 'expected {"accounts"'),
        ('{"accounts": [1]}', "accounts[0]: must be an object"),
        ('{"accounts": [{"number": "12", "balance": 1}]}', "accounts[0].number"),
        ('{"accounts": [{"number": "9410000000000001"}]}', "accounts[0].balance"),
        ('{"accounts": [{"number": "9410000000000001", "balance": 1, "kind": "x"}]}', ".kind"),
        ('{"accounts": [{"number": "941000000000001", "balance": 1, "kind": "qr"}]}', "16 digits"),
        ('{"accounts": [{"number": "9410000000000001", "balance": 1, "expiry": "3013"}]}',
         ".expiry"),
        ('{"accounts": [{"number": "9410000000000001", "balance": 1, "blocked": 1}]}', ".blocked"),
        ('{"accounts": [{"number": "9410000000000001", "balance": 1, "limit": 0}]}', ".limit"),
        ('{"accounts": [{"number": "9410000000000001", "balance": 1, "colour": 1}]}', "unknown"),
        ('{"accounts": [{"number": "9410000000000001", "balance": 1},'
         ' {"number": "9410000000000001", "balance": 2}]}', "listed twice"),
    ],
)  # fmt: skip
def test_accounts_file_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "accounts.json"
    path.write_text(content)
    with pytest.raises(AccountsFileError, match=message.replace("[", r"\[").replace("{", r"\{")):
        AccountBook.from_file(path)
    with pytest.raises(AccountsFileError, match="cannot read"):
        AccountBook.from_file(tmp_path / "missing.json")


# ---- the command ------------------------------------------------------------------------


@pytest.fixture
def mac_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "mac.key"
    path.write_text(MAC_KEY.hex() + "\n")
    return path


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--listen", "8583"], 64, "expected HOST:PORT"),
        (["--listen", "127.0.0.1:99999"], 64, "expected HOST:PORT"),
        (["--tls", "--cert", "c.pem"], 64, "--tls needs"),
        (["--accounts", "/nonexistent/a.json"], 78, "cannot read"),
    ],
)
def test_cli_refuses_bad_arguments(
    mac_key_file: Path,
    args: list[str],
    code: int,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert ledger_sim_cli.main(["--mac-key-file", str(mac_key_file), *args]) == code
    assert message in capsys.readouterr().err


def test_cli_refuses_a_bad_mac_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("00" * 31)
    assert ledger_sim_cli.main(["--mac-key-file", str(bad)]) == 78
    assert ledger_sim_cli.main(["--mac-key-file", str(tmp_path / "none.key")]) == 66
    assert "00" * 31 not in capsys.readouterr().err


async def test_cli_serves_a_sign_on_and_a_purchase(mac_key_file: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from posd.cli.ledger_sim import main; "
        "sys.exit(main(sys.argv[1:]))",
        "--listen", "127.0.0.1:0", "--mac-key-file", str(mac_key_file),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=REPO,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        async with asyncio.timeout(10):
            line = (await process.stdout.readline()).decode()
            assert line.startswith("ledger-sim listening on 127.0.0.1:"), line
            port = int(line.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            sign_on = network_request("001", stan=1, transmitted_at=NOW, terminal_id=TERMINAL)
            request = purchase(amount=1_234)
            writer.write(frame(encode(sign_on, MAC_KEY)) + frame(encode(request, MAC_KEY)))
            decoder = LengthPrefixDecoder()
            answers: list[bytes] = []
            while len(answers) < 2:
                answers += decoder.feed(await reader.read(4096))
            writer.close()
        network, financial = (decode_response(a, MAC_KEY) for a in answers)
        assert network.message.response_code == "00"
        assert financial.mac_valid and financial.message.response_code == "00"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await process.wait() == 0
    log = (await process.stderr.read()).decode()
    assert "rx 0200" in log and "tx 0210" in log and "rc=00" in log
    assert GOOD_CARD not in log and "941000******0001" in log
    assert os.fsencode(MAC_KEY.hex()) not in log.encode()
