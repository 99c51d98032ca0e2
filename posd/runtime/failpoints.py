"""Failpoints: named instants inside posd where a test makes it fail, as etcd's gofail and
TiKV's fail-rs do. Inert unless the environment names a point:

    POSD_FAILPOINTS="payments.before_0200=kill" posd run -c posd.toml

Several are joined by `;`. The one action is `kill`: SIGKILL the process at that instant, the
power cut (nothing flushed, closed or logged after it). A point is for an instant no peer can
see from outside (the reference ledger and the simulated reader call tests back at every
message, so a kill at a protocol event needs none).

The environment is read once, at import; an unset variable leaves `failpoint` one test of an
empty dict. A name or action not listed here stops posd at start: a mis-spelt point would
otherwise never fire and the test waiting on it would only time out.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from typing import Final

ENV: Final = "POSD_FAILPOINTS"
POINTS: Final = frozenset(
    {
        # The payment's `authorizing` (STAN, field 7, sealed card data) is on disk and its
        # 0200 has not gone out: the ledger never sees it.
        "payments.before_0200",
        # An order from the platform has arrived and is not in the journal yet; no PUBACK.
        "orders.before_journal",
        # The order is in the journal and its PUBACK has not gone out: the broker sends it again.
        "orders.after_journal",
    }
)
ACTIONS: Final = frozenset({"kill"})


class FailpointError(ValueError):
    """POSD_FAILPOINTS names a point or an action that does not exist."""


def parse(spec: str) -> dict[str, str]:
    """`name=action;name=action` as {name: action}; blanks around each part are ignored."""
    armed: dict[str, str] = {}
    for part in spec.split(";"):
        if not part.strip():
            continue
        name, sep, action = (s.strip() for s in part.partition("="))
        if not sep or name not in POINTS or action not in ACTIONS:
            raise FailpointError(
                f"{ENV}: {part.strip()!r} is not point=action "
                f"(points: {', '.join(sorted(POINTS))}; actions: {', '.join(sorted(ACTIONS))})"
            )
        armed[name] = action
    return armed


_ARMED: Final[Mapping[str, str]] = parse(os.environ.get(ENV, ""))


def failpoint(name: str) -> None:
    """Does what POSD_FAILPOINTS says at `name`: nothing, unless it names it."""
    if not _ARMED:
        return
    if _ARMED.get(name) == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
