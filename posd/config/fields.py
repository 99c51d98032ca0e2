"""Typed reading of one TOML table, collecting every problem instead of stopping at the first.

Each reader returns the value, or the default when the key is absent; on a bad value it records a
problem, marks the key bad (so cross-key rules skip it) and returns the default so reading can go
on and report everything in one pass. A config with any problem is never handed out.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, TypeVar

from posd.config.errors import ConfigError, ConfigProblem
from posd.config.lines import KeyPath, format_key_path, line_of


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
"""Default for keys that have no sensible default and must be in the file."""

T = TypeVar("T")
ValueCheck = Callable[[T], str | None]
"""Returns what is wrong with an already well-typed value, or None when it is fine."""

_MISSING: Final = object()


def toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return "a date/time"
    return type(value).__name__


def show(value: object, limit: int = 40) -> str:
    """A short TOML-looking rendering of a bad value, for messages about non-secret keys."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= limit else text[: limit - 2] + '…"'
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Problems:
    """Every problem found in one config text, each placed on its line."""

    def __init__(self, source: Path, lines: Mapping[KeyPath, int]) -> None:
        self.source = source
        self.lines = lines
        self.items: list[ConfigProblem] = []

    def add(self, path: KeyPath, message: str) -> None:
        self.items.append(
            ConfigProblem(self.source, line_of(self.lines, path), format_key_path(path), message)
        )

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.items)


class Table:
    """The keys of one TOML table, read once each; whatever is left unread is unknown."""

    def __init__(
        self,
        problems: Problems,
        path: KeyPath,
        data: Mapping[str, object],
        unknown_hints: Mapping[str, str] | None = None,
        *,
        noun: str = "key",
    ) -> None:
        self.problems = problems
        self.key_path = path
        self.data = data
        self._read: list[str] = []
        self._bad: set[str] = set()
        self._unknown_hints = unknown_hints or {}
        self._noun = noun

    def problem(self, key: str, message: str, *, sub: KeyPath = ()) -> None:
        self._bad.add(key)
        self.problems.add((*self.key_path, key, *sub), message)

    def valid(self, *keys: str) -> bool:
        """Whether these keys all hold usable values (absent keys hold their defaults)."""
        return not self._bad.intersection(keys)

    def present(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str, default: object) -> object:
        self._read.append(key)
        value = self.data.get(key, _MISSING)
        if value is _MISSING:
            if isinstance(default, _Required):
                self.problem(key, "missing, this key is required")
            return _MISSING
        return value

    def _typed(self, key: str, value: object, kind: type[T], expected: str) -> T | None:
        if isinstance(value, bool) and kind is not bool:
            self.problem(key, f"got {toml_type(value)}, expected {expected}")
            return None
        if not isinstance(value, kind):
            self.problem(key, f"got {toml_type(value)} {show(value)}, expected {expected}")
            return None
        return value

    def string(
        self,
        key: str,
        default: str | _Required,
        check: ValueCheck[str] | None = None,
        *,
        expected: str = "a string",
    ) -> str:
        fallback = "" if isinstance(default, _Required) else default
        raw = self._get(key, default)
        if raw is _MISSING:
            return fallback
        value = self._typed(key, raw, str, expected)
        if value is None:
            return fallback
        if check is not None and (message := check(value)) is not None:
            self.problem(key, message)
            return fallback
        return value

    def optional_string(self, key: str, check: ValueCheck[str] | None = None) -> str | None:
        """A string where "" (the default) means not set; `check` sees only non-empty values."""

        def unless_empty(value: str) -> str | None:
            return None if not value or check is None else check(value)

        return self.string(key, "", unless_empty) or None

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        listed = ", ".join(f'"{a}"' for a in allowed)

        def one_of(value: str) -> str | None:
            if value in allowed:
                return None
            return f"{show(value)} is not allowed, expected one of {listed}"

        return self.string(key, default, one_of, expected=f"a string, one of {listed}")

    def integer(
        self,
        key: str,
        default: int | _Required,
        low: int,
        high: int,
        *,
        expected: str | None = None,
        check: ValueCheck[int] | None = None,
    ) -> int:
        fallback = low if isinstance(default, _Required) else default
        expected = expected or f"an integer from {low} to {high}"
        raw = self._get(key, default)
        if raw is _MISSING:
            return fallback
        value = self._typed(key, raw, int, expected)
        if value is None:
            return fallback
        if not low <= value <= high:
            self.problem(key, f"{show(value)} is out of range, expected {expected}")
            return fallback
        if check is not None and (message := check(value)) is not None:
            self.problem(key, message)
            return fallback
        return value

    def value(self, key: str, default: object) -> object:
        """The raw value, for keys that accept more than one TOML type."""
        raw = self._get(key, default)
        return default if raw is _MISSING else raw

    def seconds(self, key: str, default: float, high: float) -> float:
        """A duration in seconds, integer or float, above zero and at most `high`."""
        expected = f"a number of seconds above 0 and at most {high:g}"
        raw = self._get(key, default)
        if raw is _MISSING:
            return default
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            self.problem(key, f"got {toml_type(raw)} {show(raw)}, expected {expected}")
            return default
        value = float(raw)
        if not math.isfinite(value) or not 0 < value <= high:
            self.problem(key, f"{show(raw)} is out of range, expected {expected}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        raw = self._get(key, default)
        if raw is _MISSING:
            return default
        value = self._typed(key, raw, bool, "true or false")
        return default if value is None else value

    def path(self, key: str, default: str) -> Path | None:
        """A file or directory path; "" means none. Relative paths are relative to the cwd.

        A value of another type is not shown in the problem: where a secret's file belongs,
        it may be the secret itself, pasted without quotes.
        """
        raw = self.data.get(key, _MISSING)
        if raw is not _MISSING and not isinstance(raw, str):
            self._get(key, default)
            self.problem(
                key, f"got {toml_type(raw)} (not shown here), expected a string holding a file path"
            )
            return Path(default) if default else None

        def no_nul(value: str) -> str | None:
            return "holds a NUL character, expected a file path" if "\0" in value else None

        value = self.string(key, default, no_nul, expected="a string holding a file path")
        return Path(value) if value else None

    def array(self, key: str, default: list[object]) -> list[object]:
        raw = self._get(key, default)
        if raw is _MISSING:
            return list(default)
        value = self._typed(key, raw, list, "an array")
        return default if value is None else value

    def table(self, key: str) -> dict[str, object]:
        raw = self._get(key, {})
        if raw is _MISSING:
            return {}
        value = self._typed(key, raw, dict, "a table")
        return {} if value is None else value

    def finish(self) -> None:
        """Report every key that no reader asked for: a typo must not be silently ignored."""
        known = self._read
        for key in self.data:
            if key in known:
                continue
            hint = self._unknown_hints.get(key)
            if hint is None:
                import difflib  # only for a mistyped key: the daemon that starts never needs it

                close = difflib.get_close_matches(key, known, n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                hint += "expected one of: " + ", ".join(known)
            self.problems.add((*self.key_path, key), f"unknown {self._noun}, {hint}")
