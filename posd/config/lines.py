"""Line numbers of the keys in a TOML document.

tomllib returns plain values with no positions, yet every config problem must name the line to
edit. This scanner walks a document that tomllib has already accepted and records, for each key
path, the line where the key (or array element) starts: table headers, dotted keys, quoted keys,
inline tables and multi-line arrays included. It does not validate; it only has to find.
"""

from __future__ import annotations

import bisect
import re
import tomllib
from collections.abc import Mapping

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_INLINE_SPACE = " \t"
_SCALAR_END = ",]}#\r\n"


def format_key_path(path: KeyPath) -> str:
    """`ledger.ca_file`, `card_reader.accepted_prefixes[1]`, `qr.platform_keys.1`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = part if _BARE_KEY.fullmatch(part) else _quote(part)
        out += f".{name}" if out else name
    return out


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def locate_keys(text: str) -> dict[KeyPath, int]:
    """Map each key path (and array element path) of a valid TOML document to its 1-based line."""
    scanner = _Scanner(text)
    scanner.document()
    return scanner.lines


def line_of(lines: Mapping[KeyPath, int], path: KeyPath) -> int:
    """The line of `path`, else of its nearest present parent (a section header), else 1."""
    for end in range(len(path), 0, -1):
        found = lines.get(path[:end])
        if found is not None:
            return found
    return 1


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lines: dict[KeyPath, int] = {}
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]
        self._table_arrays: dict[KeyPath, int] = {}

    def document(self) -> None:
        table: KeyPath = ()
        while True:
            self._skip_blank()
            if self.pos >= len(self.text):
                return
            start = self.pos
            if self.text.startswith("[[", start):
                self.pos += 2
                base = self._key()
                self._expect("]]")
                index = self._table_arrays.get(base, 0)
                self._table_arrays[base] = index + 1
                table = (*base, index)
                self._mark(table, start)
            elif self.text[start] == "[":
                self.pos += 1
                table = self._key()
                self._expect("]")
                self._mark(table, start)
            else:
                path = table + self._key()
                self._expect("=")
                self._mark(path, start)
                self._value(path)

    def _line(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    def _mark(self, path: KeyPath, pos: int) -> None:
        line = self._line(pos)
        for end in range(1, len(path) + 1):
            self.lines.setdefault(path[:end], line)

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _INLINE_SPACE:
            self.pos += 1

    def _skip_blank(self) -> None:
        """Whitespace, newlines and comments."""
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\r\n":
                self.pos += 1
            elif char == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def _expect(self, token: str) -> None:
        self._skip_space()
        if not self.text.startswith(token, self.pos):
            raise ValueError(f"expected {token!r} at offset {self.pos}")
        self.pos += len(token)

    def _key(self) -> KeyPath:
        parts: list[str] = []
        while True:
            self._skip_space()
            text = self.text
            char = text[self.pos] if self.pos < len(text) else ""
            if char == '"':
                start = self.pos
                self._skip_basic_string()
                parts.append(tomllib.loads("k = " + text[start : self.pos])["k"])
            elif char == "'":
                end = text.index("'", self.pos + 1)
                parts.append(text[self.pos + 1 : end])
                self.pos = end + 1
            else:
                match = _BARE_KEY.match(text, self.pos)
                if match is None:
                    raise ValueError(f"expected a key at offset {self.pos}")
                parts.append(match.group())
                self.pos = match.end()
            self._skip_space()
            if self.text.startswith(".", self.pos):
                self.pos += 1
                continue
            return tuple(parts)

    def _value(self, path: KeyPath) -> None:
        self._skip_space()
        text = self.text
        if text.startswith('"""', self.pos):
            self._skip_multiline('"""', escapes=True)
        elif text.startswith("'''", self.pos):
            self._skip_multiline("'''", escapes=False)
        elif text.startswith('"', self.pos):
            self._skip_basic_string()
        elif text.startswith("'", self.pos):
            self.pos = text.index("'", self.pos + 1) + 1
        elif text.startswith("[", self.pos):
            self._array(path)
        elif text.startswith("{", self.pos):
            self._inline_table(path)
        else:
            start = self.pos
            while self.pos < len(text) and text[self.pos] not in _SCALAR_END:
                self.pos += 1
            if self.pos == start:
                raise ValueError(f"expected a value at offset {start}")

    def _skip_basic_string(self) -> None:
        text = self.text
        i = self.pos + 1
        while text[i] != '"':
            i += 2 if text[i] == "\\" else 1
        self.pos = i + 1

    def _skip_multiline(self, quotes: str, *, escapes: bool) -> None:
        text = self.text
        i = self.pos + 3
        while not text.startswith(quotes, i):
            i += 2 if escapes and text[i] == "\\" else 1
        # Up to two quote characters may sit right before the closing delimiter.
        end = i + 3
        while end < len(text) and text[end] == quotes[0] and end - i < 5:
            end += 1
        self.pos = end

    def _array(self, path: KeyPath) -> None:
        self.pos += 1
        index = 0
        while True:
            self._skip_blank()
            if self.text.startswith("]", self.pos):
                self.pos += 1
                return
            element = (*path, index)
            self._mark(element, self.pos)
            self._value(element)
            self._skip_blank()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                index += 1

    def _inline_table(self, path: KeyPath) -> None:
        self.pos += 1
        while True:
            self._skip_blank()
            if self.text.startswith("}", self.pos):
                self.pos += 1
                return
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            start = self.pos
            key = (*path, *self._key())
            self._expect("=")
            self._mark(key, start)
            self._value(key)
