"""Suite-wide settings. Fixtures for one area live beside its tests."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# Property tests run often and must stay fast; `HYPOTHESIS_PROFILE=deep` digs further by hand,
# with fresh random examples. The default profile is derandomized so that a CI run of a
# given commit sees the examples the developer's run saw: red means a change, not a dice roll.
settings.register_profile(
    "default",
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("deep", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _fresh_redactor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with an empty secret registry: secrets registered by one test (every
    journal key, every QR) must neither mask another test's output nor make every later
    registration recompile an ever longer pattern."""
    import posd.logs.handler
    from posd.logs import Redactor

    monkeypatch.setattr(posd.logs.handler, "_REDACTOR", Redactor())


@pytest.fixture(autouse=True)
def _restore_process_logging() -> Iterator[None]:
    """posd.logs.setup_logging (run in-process by daemon and demo tests) sets the root level and
    the process-wide exception hooks; put them back so no test sees another's logging."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    hooks = (sys.excepthook, threading.excepthook, sys.unraisablehook)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    sys.excepthook, threading.excepthook, sys.unraisablehook = hooks
