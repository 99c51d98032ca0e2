"""The journal key file, and card data never on disk in the clear."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from posd.journal import CardSecrets, Journal, JournalKeyError, SealError
from posd.journal.crypto import JournalCipher

NOW = 1_795_600_000.0
PAN = "9410987654321098"
TRACK2 = PAN + "D28121010000012345"
ICC = bytes.fromhex("5a08" + PAN + "5f24032812319f2608a1b2c3d4e5f60718")
QR_TEXT = "hQVDUFYwMWFTTwfUEAAAAUYBUAhTRU9ST0VVTVoIlBAAABERIiJjOd8BBGU="


def leaks(state_dir: Path) -> list[str]:
    """Which clear forms of the card data appear in any journal file's raw bytes."""
    needles = {
        "PAN digits": PAN.encode(),
        "PAN BCD": bytes.fromhex(PAN),
        "track 2": TRACK2.encode(),
        "track 2 '='": TRACK2.replace("D", "=").encode(),
        "track 2 BCD": bytes.fromhex(TRACK2),
        "ICC TLV": ICC,
        "QR text": QR_TEXT.encode(),
    }
    found = []
    for path in state_dir.iterdir():
        if path.name.startswith("journal.db"):
            raw = path.read_bytes()
            found += [f"{name} in {path.name}" for name, needle in needles.items() if needle in raw]
    return found


def test_needles_are_found_when_present(tmp_path: Path) -> None:
    (tmp_path / "journal.db-wal").write_bytes(b"xx" + bytes.fromhex(PAN) + b"yy")
    assert leaks(tmp_path) == ["PAN BCD in journal.db-wal"]


async def test_key_created_private_and_reused(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path)
    await j.create_payment(amount=1, charged=1, method="any", idempotency_key="k", now=NOW)
    key = tmp_path / "journal.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.stat().st_size == 32
    for name in ("journal.db", "journal.db-wal", "journal.db-shm"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    await j.close()
    first = key.read_bytes()
    j = await Journal.open(tmp_path)
    await j.close()
    assert key.read_bytes() == first


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
async def test_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    key = tmp_path / "journal.key"
    key.write_bytes(os.urandom(32))
    key.chmod(mode)
    with pytest.raises(JournalKeyError, match=f"mode {mode:04o}.*chmod 600"):
        await Journal.open(tmp_path)
    # Refused, not repaired: the operator decides what to do with the key.
    assert stat.S_IMODE(key.stat().st_mode) == mode


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
async def test_key_of_wrong_size_is_refused(tmp_path: Path, size: int) -> None:
    key = tmp_path / "journal.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"k" * size)
    os.close(fd)
    with pytest.raises(JournalKeyError, match="expected exactly 32"):
        await Journal.open(tmp_path)


async def test_key_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    fd = os.open(real, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, os.urandom(32))
    os.close(fd)
    (tmp_path / "journal.key").symlink_to(real)
    with pytest.raises(JournalKeyError, match="regular file"):
        await Journal.open(tmp_path)


async def test_other_key_for_existing_journal_is_refused(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path)
    await j.close()
    key = tmp_path / "journal.key"
    key.unlink()
    fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, os.urandom(32))
    os.close(fd)
    with pytest.raises(JournalKeyError, match="not the key this journal was written with"):
        await Journal.open(tmp_path)


async def test_missing_key_for_existing_journal_is_refused_not_recreated(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path)
    await j.close()
    (tmp_path / "journal.key").unlink()
    with pytest.raises(JournalKeyError, match="missing"):
        await Journal.open(tmp_path)
    assert not (tmp_path / "journal.key").exists()


async def pay(j: Journal, key: str, card: CardSecrets) -> str:
    record, _ = await j.create_payment(
        amount=5_000, charged=5_000, method="any", idempotency_key=key, now=NOW
    )
    await j.begin_authorization(record.payment_id, card, NOW)
    return record.payment_id


async def test_no_card_data_in_the_clear_while_authorizing_or_after(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path)
    try:
        chip = await pay(j, "chip", CardSecrets("chip", PAN, expiry="2812", track2=TRACK2, icc=ICC))
        mag = await pay(j, "mag", CardSecrets("magstripe", PAN, track2=TRACK2.replace("D", "=")))
        qr = await pay(j, "qr", CardSecrets("qr", PAN, qr_text=QR_TEXT))
        timed_out = await pay(j, "rev", CardSecrets("chip", PAN, track2=TRACK2, icc=ICC))
        assert leaks(tmp_path) == []
        assert (await j.card_data(chip)) is not None

        await j.record_answer(chip, response_code="00", rrn="000000000007", now=NOW)
        await j.record_answer(mag, response_code="05", now=NOW)
        await j.record_answer(qr, response_code="00", now=NOW)
        fields: dict[str, str | bytes] = {"2": PAN, "35": TRACK2, "55": ICC, "48": "QT=" + QR_TEXT}
        _, entry = await j.start_reversal(
            timed_out, fields=fields, stan=9, now=NOW, decline_reason="ledger_timeout"
        )
        assert leaks(tmp_path) == []
        message = await j.saf_due(NOW)
        assert message is not None and message.fields == fields
        await j.saf_complete(entry.entry_id, response_code="00", now=NOW)
        for pid in (chip, mag, qr, timed_out):
            assert await j.card_data(pid) is None
        with sqlite3.connect(tmp_path / "journal.db") as db:
            assert (
                db.execute("SELECT count(*) FROM payments WHERE card_data IS NOT NULL").fetchone()[
                    0
                ]
                == 0
            )
            assert (
                db.execute("SELECT count(*) FROM saf WHERE fields IS NOT NULL").fetchone()[0] == 0
            )
            masked = {row[0] for row in db.execute("SELECT masked_pan FROM payments")}
        assert masked == {"941098******1098", None}
        assert leaks(tmp_path) == []
    finally:
        await j.close()
    assert leaks(tmp_path) == []


async def test_sealed_blob_moved_to_another_payment_does_not_open(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path)
    try:
        a = await pay(j, "a", CardSecrets("chip", PAN))
        b = await pay(j, "b", CardSecrets("chip", "9410000000000001"))
        with sqlite3.connect(tmp_path / "journal.db") as db:
            db.execute(
                "UPDATE payments SET card_data = (SELECT card_data FROM payments WHERE id = ?)"
                " WHERE id = ?",
                (a, b),
            )
        with pytest.raises(SealError, match="does not authenticate") as err:
            await j.card_data(b)
        assert PAN not in str(err.value)
    finally:
        await j.close()


def test_cipher_rejects_truncated_and_foreign_blobs() -> None:
    cipher = JournalCipher(os.urandom(32))
    blob = cipher.seal(b"secret", b"aad")
    assert cipher.open(blob, b"aad") == b"secret"
    assert cipher.seal(b"secret", b"aad") != blob  # fresh nonce each time
    for bad in (blob[:20], b"\x02" + blob[1:], blob[:-1] + bytes([blob[-1] ^ 1])):
        with pytest.raises(SealError):
            cipher.open(bad, b"aad")
    with pytest.raises(SealError):
        JournalCipher(os.urandom(32)).open(blob, b"aad")
    with pytest.raises(JournalKeyError):
        JournalCipher(b"short")


def test_account_hash_is_keyed_and_stable() -> None:
    key = os.urandom(32)
    assert JournalCipher(key).account_hash(PAN) == JournalCipher(key).account_hash(PAN)
    assert JournalCipher(key).account_hash(PAN) != JournalCipher(os.urandom(32)).account_hash(PAN)
    assert PAN not in JournalCipher(key).account_hash(PAN)


def test_reprs_never_show_card_data() -> None:
    card = CardSecrets("chip", PAN, expiry="2812", track2=TRACK2, icc=ICC, qr_text=QR_TEXT)
    text = repr(card) + str(card)
    assert "941098******1098" in text
    for secret in (PAN, TRACK2, ICC.hex(), QR_TEXT, "2812"):
        assert secret not in text
    assert CardSecrets.from_bytes(card.to_bytes()) == card
