"""`posd config check` and `posd config example`, with sysexits exit codes."""

from __future__ import annotations

import os
import sys

from posd.config import ConfigError, ConfigFileError, example_text, load_config


def check(path: str) -> int:
    """Validate the config at `path`: 0 and `FILE: ok`, 66 unreadable, 78 with every problem."""
    try:
        load_config(path)
    except ConfigFileError as exc:
        print(exc, file=sys.stderr)
        return os.EX_NOINPUT
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        print(
            f"{count} problem{'s' if count != 1 else ''} in {path}: fix each line above, then run "
            f"`posd config check {path}` again (`posd config example` shows every key).",
            file=sys.stderr,
        )
        return os.EX_CONFIG
    print(f"{path}: ok")
    return os.EX_OK


def example() -> int:
    """Print the complete, commented example config."""
    try:
        sys.stdout.write(example_text())
        sys.stdout.flush()
    except BrokenPipeError:
        # `posd config example | head`: the reader left; stop quietly without a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return os.EX_OK
