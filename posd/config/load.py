"""Loading the config: which file (`config_path`), read and parsed as TOML (`load_config`), every
problem of it raised at once as a `ConfigError` of `FILE:LINE: key.path: what is wrong, expected
what` lines.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

from posd.config.errors import ConfigError, ConfigFileError, ConfigProblem
from posd.config.fields import Problems
from posd.config.lines import locate_keys
from posd.config.model import Config
from posd.config.sections import build_config

# Where every command looks for the config when neither -c FILE nor $POSD_CONFIG names one.
DEFAULT_CONFIG = "/etc/posd/posd.toml"
CONFIG_ENV = "POSD_CONFIG"
MAX_CONFIG_BYTES = 1 << 20


def named_config(given: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The config file the user named: `-c FILE`, else $POSD_CONFIG; None when neither did."""
    env = os.environ if environ is None else environ
    return given or env.get(CONFIG_ENV) or None


def config_path(given: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The config file a command reads: the one the user named, else DEFAULT_CONFIG."""
    return named_config(given, environ) or DEFAULT_CONFIG


def example_text() -> str:
    """The complete, commented example config (`posd config example`), as packaged."""
    # Imported here: importlib.resources (tempfile, shutil and their compressors) is for
    # `posd config example`, never for the daemon.
    from importlib import resources

    return resources.files(__package__).joinpath("example.toml").read_text(encoding="utf-8")


def load_config(path: str | Path) -> Config:
    """Read and validate the config file; ConfigFileError if it cannot be read at all."""
    source = Path(path)
    data = _read_config_file(source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [ConfigProblem(source, line, "", "not UTF-8 text, expected a UTF-8 TOML file")]
        ) from None
    return _parse(text, source, hashlib.sha256(data).hexdigest())


def parse_config(text: str, source: Path) -> Config:
    """Validate config text as if read from `source`; files it names are checked on disk."""
    return _parse(text, source, hashlib.sha256(text.encode()).hexdigest())


def _read_config_file(source: Path) -> bytes:
    try:
        with open(source, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        message = (
            "config file not found; create one with `posd config example > FILE` and edit it, "
            "or name another file with -c FILE or POSD_CONFIG"
        )
    except IsADirectoryError:
        message = "is a directory, expected the config file (a TOML file)"
    except PermissionError:
        message = "config file not readable by this process; make it readable by the posd user"
    except OSError as exc:
        message = f"config file cannot be read ({exc.strerror})"
    else:
        if len(data) > MAX_CONFIG_BYTES:
            message = f"config file is larger than {MAX_CONFIG_BYTES} bytes, expected a TOML file"
        else:
            return data
    raise ConfigFileError(source, message)


_SYNTAX_POSITION = re.compile(r" \(at line (\d+), column (\d+)\)$| \(at end of document\)$")


def _syntax_problem(source: Path, text: str, error: tomllib.TOMLDecodeError) -> ConfigProblem:
    message = str(error)
    match = _SYNTAX_POSITION.search(message)
    if match is None:
        line = 1
    elif match.group(1) is None:
        line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        message = message[: match.start()] + " (at end of file)"
    else:
        line = int(match.group(1))
        message = message[: match.start()] + f" (column {match.group(2)})"
    return ConfigProblem(source, line, "", f"syntax error: {message}; expected valid TOML")


def _parse(text: str, source: Path, digest: str) -> Config:
    try:
        return _parse_nested(text, source, digest)
    except RecursionError:
        # tomllib (and the key locator) recurse per level of [[[... or {a={b=...: a file nested
        # a few hundred deep exhausts the stack. posd's config is tables of plain values.
        line = _deepest_line(text)
        raise ConfigError(
            [
                ConfigProblem(
                    source,
                    line,
                    "",
                    "arrays or inline tables nested too deeply to read; expected posd's tables "
                    "of plain values (`posd config example` shows them)",
                )
            ]
        ) from None


def _parse_nested(text: str, source: Path, digest: str) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(source, text, exc)]) from None
    try:
        lines = locate_keys(text)
    except (ValueError, IndexError):
        # Unplaced problems still beat no config check at all; they fall back to line 1.
        lines = {}
    problems = Problems(source, lines)
    config = build_config(data, problems, source, digest)
    problems.raise_if_any()
    return config


def _deepest_line(text: str) -> int:
    """The line where brackets and braces nest deepest (strings are not told apart: this only
    points the technician at the place)."""
    depth = deepest = 0
    line = where = 1
    for ch in text:
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest, where = depth, line
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "\n":
            line += 1
    return where
