"""What the supervisor runs: a named long-lived task that says when it is serving.

A component is any object with

    name: str
    async def run(self, started: Callable[[], None]) -> None

`run` calls `started()` once it is serving (listening, its device loop running: a reader that is
unplugged is still "serving" as long as it is watching for the device), then runs until it is
cancelled. Raising (or returning) means it crashed; the supervisor restarts it with backoff.
`run` is called again on the same object after a crash, so it must not rely on state left over
from the previous attempt.

Config reload: a component may declare

    config_sections: Collection[str]

the top-level config tables it was built from (e.g. `("ledger",)`). On SIGHUP, if any of those
sections changed (a value, or the contents of a file a value names), posd builds the component
anew from the new config and replaces the running one. An empty collection means "never restart
on reload"; a component that declares nothing is restarted whenever anything changed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol, runtime_checkable


@runtime_checkable
class Component(Protocol):
    name: str

    async def run(self, started: Callable[[], None]) -> None: ...


def config_sections(component: Component) -> frozenset[str] | None:
    """The config tables `component` depends on, or None when it did not say (depends on all)."""
    declared: Collection[str] | None = getattr(component, "config_sections", None)
    if declared is None:
        return None
    if isinstance(declared, str):
        raise TypeError(
            f"component {component.name}: config_sections must be a collection of names, "
            f"not the string {declared!r}"
        )
    return frozenset(declared)
