"""Logging for posd: one redacted line per record on stderr, for journald.

`setup_logging(level, fmt)` installs the only handler, on the root logger. Each record becomes
one line, `text` (`2026-11-25T12:33:04.123Z INFO posd.payments message key=value ...`) or
`json` (one object per line). Every part of the line (message with its args, `extra=` values,
exception text and traceback, stack) is redacted by the Redactor (redaction.py) before it is
joined and once more after, so card data and registered secrets never reach the journal,
whatever a caller passed in.

The redactor is process-wide, as the logging tree it serves is: `register_secret(value)` masks a
key, token or QR text from then on, in logs and in everything else that calls `redact()`.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
import types
from collections.abc import Iterable, Mapping
from typing import TextIO

from posd.logs.redaction import Redactor

LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
FORMATS = ("text", "json")

_REDACTOR = Redactor()
# What no package caught is the process's own: logged as `posd`, not as this package.
_PROCESS_LOG = logging.getLogger("posd")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}

_CONTROL = {i: f"\\x{i:02x}" for i in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t", 127: "\\x7f"}


def register_secret(value: str | bytes, *, transient: bool = False) -> None:
    """Mask `value` (key, token, QR text) in every log line and status text from now on.

    Per-payment values such as QR texts pass transient=True: only the most recent of those are
    kept, so a long-running daemon does not accumulate them. Raises ValueError when the value is
    shorter than 6 characters (too short to mask without blanking ordinary text).
    """
    _REDACTOR.register(value, transient=transient)


def set_card_prefixes(prefixes: Iterable[str]) -> None:
    """Mask, from now on, every 13-19 digit run starting with one of `prefixes` (the config's
    card_reader.accepted_prefixes), whether or not it passes Luhn."""
    _REDACTOR.set_card_prefixes(prefixes)


def redact(text: str) -> str:
    """`text` with card data and registered secrets masked: for anything shown outside posd."""
    return _REDACTOR.redact(text)


def parse_level(level: str) -> int:
    try:
        return LEVELS[level.lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}"
        ) from None


def _one_line(text: str) -> str:
    return text.translate(_CONTROL)


def _timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _scalar(value: object, redactor: Redactor) -> object:
    """A JSON-ready, redacted form of an `extra=` value."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        text = repr(value)
        masked = redactor.redact(text)
        return value if masked == text else masked
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, Mapping):
        return {redactor.redact(str(k)): _scalar(v, redactor) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scalar(v, redactor) for v in value]
    return redactor.redact(repr(value) if isinstance(value, bytes | bytearray) else str(value))


class RedactingFormatter(logging.Formatter):
    """Formats a record as one redacted line, `text` or `json`."""

    def __init__(self, fmt: str = "text", redactor: Redactor | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown log format {fmt!r}; expected text or json")
        super().__init__()
        self.fmt = fmt
        self.redactor = redactor if redactor is not None else _REDACTOR

    def _parts(self, record: logging.LogRecord) -> tuple[str, dict[str, object], str | None]:
        try:
            message = record.getMessage()
        except Exception as exc:  # a bad %-format must not lose the record or show its args raw
            message = f"{record.msg!r} (unformattable args: {type(exc).__name__})"
        extras = {
            key: _scalar(value, self.redactor)
            for key, value in vars(record).items()
            if key not in _RECORD_ATTRS and not key.startswith("_")
        }
        trace = ""
        if record.exc_info and record.exc_info[0] is not None:
            trace = self.formatException(record.exc_info)
        elif record.exc_text:
            trace = record.exc_text
        if record.stack_info:
            trace = f"{trace}\n{self.formatStack(record.stack_info)}".strip("\n")
        return self.redactor.redact(message), extras, self.redactor.redact(trace) or None

    def format(self, record: logging.LogRecord) -> str:
        message, extras, trace = self._parts(record)
        if self.fmt == "json":
            obj: dict[str, object] = {
                "ts": _timestamp(record.created),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": message,
            }
            for key, value in extras.items():
                obj.setdefault(self.redactor.redact(key), value)
            if trace:
                obj["exc"] = trace
            line = json.dumps(obj, ensure_ascii=False, default=str)
        else:
            fields = [_timestamp(record.created), record.levelname, record.name, message]
            for key, value in extras.items():
                if isinstance(value, str):
                    text = value
                    if not text or any(c in text for c in ' "=\\') or not text.isprintable():
                        text = json.dumps(text, ensure_ascii=False)
                else:
                    # Compact JSON is one token unless a string inside it holds a space.
                    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
                    if " " in text:
                        text = json.dumps(text, ensure_ascii=False)
                fields.append(f"{self.redactor.redact(key)}={text}")
            if trace:
                fields.append(f"exc={json.dumps(trace, ensure_ascii=False)}")
            line = " ".join(fields)
        return _one_line(self.redactor.redact(line))


class RedactingHandler(logging.StreamHandler[TextIO]):
    """A stream handler whose every line went through RedactingFormatter, whatever is set."""

    def __init__(self, stream: TextIO, fmt: str = "text", redactor: Redactor | None = None) -> None:
        super().__init__(stream)
        self.setFormatter(RedactingFormatter(fmt, redactor))

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        if not isinstance(fmt, RedactingFormatter):
            raise TypeError("posd log lines are only ever formatted by RedactingFormatter")
        super().setFormatter(fmt)


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: types.TracebackType | None
) -> None:
    _PROCESS_LOG.critical("uncaught exception", exc_info=(exc_type, exc, tb))


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "?"
    _PROCESS_LOG.error(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def _log_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    exc = unraisable.exc_value
    text = "".join(traceback.format_exception(exc)) if exc is not None else ""
    _PROCESS_LOG.error(
        "unraisable exception: %s %r\n%s", unraisable.err_msg, unraisable.object, text
    )


def setup_logging(level: str, fmt: str, *, stream: TextIO | None = None) -> logging.Handler:
    """Route every log record, warning and uncaught exception through one redacting handler.

    Raises ValueError for an unknown level or format (the config check catches those first).
    """
    numeric = parse_level(level)
    handler = RedactingHandler(stream if stream is not None else sys.stderr, fmt)
    root = logging.getLogger()
    # Replace only a handler of ours (a reload may change the format): anything else on the root
    # logger was put there on purpose by whoever embeds posd, a test harness for one.
    for old in list(root.handlers):
        if isinstance(old, RedactingHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)
    # Without these hooks Python prints tracebacks straight to stderr, past the redaction.
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_exception
    sys.unraisablehook = _log_unraisable
    return handler


def set_level(level: str) -> None:
    """Change the level of every posd log line at run time (config reload, MQTT log_level)."""
    logging.getLogger().setLevel(parse_level(level))
