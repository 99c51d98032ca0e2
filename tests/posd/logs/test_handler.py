"""Log lines: one per record, text or JSON, with card data and secrets masked in every part."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posd.logs import (
    SECRET_MASK,
    RedactingFormatter,
    RedactingHandler,
    Redactor,
    luhn_valid,
    parse_level,
)

PAN = "9410123456789010"
assert luhn_valid(PAN)


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO, RedactingHandler]]:
    stream = io.StringIO()
    handler = RedactingHandler(stream, "text", Redactor())
    logger = logging.getLogger(f"posd.test.{os.urandom(4).hex()}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream, handler
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def raise_with(pan: str) -> None:
    card = {"pan": pan}
    raise ValueError(f"card {card['pan']} refused")


def test_text_line_layout(capture: tuple[logging.Logger, io.StringIO, RedactingHandler]) -> None:
    logger, stream, _ = capture
    logger.info("payment %s approved", "p-1", extra={"amount": 5000, "note": "two words"})
    (line,) = lines(stream)
    ts, level, name, rest = line.split(" ", 3)
    assert ts.endswith("Z") and "T" in ts
    assert level == "INFO"
    assert name == logger.name
    assert rest == 'payment p-1 approved amount=5000 note="two words"'


def test_json_line_layout(capture: tuple[logging.Logger, io.StringIO, RedactingHandler]) -> None:
    logger, stream, handler = capture
    handler.setFormatter(RedactingFormatter("json", Redactor()))
    logger.warning("reader %s gone", "/dev/ttyUSB0", extra={"retry": 2, "flags": ["a", 1]})
    obj = json.loads(lines(stream)[0])
    assert obj["level"] == "warning"
    assert obj["logger"] == logger.name
    assert obj["msg"] == "reader /dev/ttyUSB0 gone"
    assert obj["retry"] == 2 and obj["flags"] == ["a", 1]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_card_data_masked_in_every_part(
    capture: tuple[logging.Logger, io.StringIO, RedactingHandler], fmt: str
) -> None:
    logger, stream, handler = capture
    handler.setFormatter(RedactingFormatter(fmt, Redactor()))
    track2 = PAN + "D28122011234567890"
    logger.info("read %s / %s", PAN, track2)
    logger.info(
        "extras", extra={"pan": PAN, "pan_int": int(PAN), "tlv": bytes.fromhex("5a08" + PAN)}
    )
    try:
        raise_with(PAN)
    except ValueError:
        logger.exception("declined")
    logger.info("stack", stack_info=True, extra={"grouped": "9410 1234 5678 9010"})
    out = stream.getvalue()
    assert len(lines(stream)) == 4
    assert PAN not in out
    assert "28122011234567890" not in out
    assert "941012******9010" in out
    if fmt == "json":
        for line in lines(stream):
            json.loads(line)


@given(st.text(max_size=60), st.text(max_size=60))
def test_every_record_is_one_line(before: str, after: str) -> None:
    stream = io.StringIO()
    handler = RedactingHandler(stream, "text", Redactor())
    record = logging.LogRecord(
        "posd.x", logging.INFO, __file__, 1, before + PAN + after, None, None
    )
    handler.emit(record)
    out = stream.getvalue()
    assert out.count("\n") == 1 and out.endswith("\n")
    assert "\r" not in out
    assert PAN not in out


def test_registered_secret_masked_in_message_args_and_traceback(
    capture: tuple[logging.Logger, io.StringIO, RedactingHandler],
) -> None:
    logger, stream, handler = capture
    formatter = handler.formatter
    assert isinstance(formatter, RedactingFormatter)
    key = bytes(range(32))
    formatter.redactor.register(key)
    formatter.redactor.register("posd-token-0123456789abcdef")
    logger.info("key %s token %s", key.hex(), "posd-token-0123456789abcdef")
    logger.info("key repr", extra={"key": key})
    try:
        raise RuntimeError(f"bad key {key!r}")
    except RuntimeError:
        logger.exception("failed")
    out = stream.getvalue()
    assert key.hex() not in out
    assert repr(key) not in out
    assert "posd-token-0123456789abcdef" not in out
    assert out.count(SECRET_MASK) >= 4


def test_bad_format_args_do_not_lose_the_record() -> None:
    stream = io.StringIO()
    handler = RedactingHandler(stream, "text", Redactor())
    handler.emit(logging.LogRecord("posd.x", logging.INFO, __file__, 1, "two %s %s", (PAN,), None))
    (line,) = lines(stream)
    assert "unformattable" in line
    assert PAN not in line


def test_only_the_redacting_formatter_can_be_set() -> None:
    handler = RedactingHandler(io.StringIO())
    with pytest.raises(TypeError):
        handler.setFormatter(logging.Formatter())


def test_unknown_level_and_format_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        parse_level("loud")
    with pytest.raises(ValueError, match="unknown log format"):
        RedactingFormatter("xml")
    assert parse_level("DEBUG") == logging.DEBUG


def test_setup_logging_routes_uncaught_exceptions_through_redaction() -> None:
    # In a child process: setup_logging takes over the process-wide hooks.
    script = textwrap.dedent(
        f"""
        import logging, sys, threading, warnings
        from posd.logs.handler import register_secret, set_level, setup_logging
        setup_logging("info", "json")
        register_secret("s3cret-api-token-value")
        logging.getLogger("posd.a").debug("hidden at info")
        set_level("debug")
        logging.getLogger("posd.a").debug("token s3cret-api-token-value card {PAN}")
        warnings.warn("card {PAN} in a warning")
        t = threading.Thread(target=lambda: (_ for _ in ()).throw(ValueError("thread {PAN}")))
        t.start(); t.join()
        raise SystemError("main {PAN}")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [r["level"] for r in records] == ["debug", "warning", "error", "critical"]
    assert "hidden at info" not in proc.stderr
    assert PAN not in proc.stderr
    assert "s3cret-api-token-value" not in proc.stderr
    assert "thread 941012******9010" in records[2]["exc"]
    assert "main 941012******9010" in records[3]["exc"]
