"""Who may open what, for `posd devices`: the group memberships the posd user and the person
running the command need (dialout for serial ports, plugdev for the USB scanner), and whether
the posd user can open a device node as its owner, group and mode stand.

Users and groups are read from /etc/passwd and /etc/group (`Host.etc`): systemd-sysusers puts
the posd user there and `usermod -aG` changes them, so they are where a fix shows.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "NEEDED_GROUPS",
    "POSD_USER",
    "UNIT_GROUPS",
    "Accounts",
    "NodeAccess",
    "Problem",
    "membership_problems",
    "node_access",
    "posd_node_problem",
]

POSD_USER = "posd"
UNIT_GROUPS = ("dialout", "plugdev", "audio")
"""posd.service's SupplementaryGroups=: what the daemon has under systemd in any case."""
NEEDED_GROUPS = {
    "dialout": "owns the serial ports (card reader, serial scanner)",
    "plugdev": "owns the USB scanner's device (systemd/99-posd.rules)",
}
_YOURS = {
    "dialout": "posd devices cannot open serial ports to PING a reader",
    "plugdev": "posd devices cannot open a USB scanner's device",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """Something that stops posd from using a device, and the command that fixes it."""

    what: str
    fix: str


@dataclass(frozen=True, slots=True)
class _User:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class Accounts:
    users: tuple[_User, ...]
    groups: dict[str, tuple[int, frozenset[str]]]
    """Group name → (gid, the users listed as its members)."""

    @classmethod
    def read(cls, etc: Path) -> Accounts:
        users = []
        for fields in _colon_file(etc / "passwd", 4):
            if fields[2].isdecimal() and fields[3].isdecimal():
                users.append(_User(fields[0], int(fields[2]), int(fields[3])))
        groups = {}
        for fields in _colon_file(etc / "group", 4):
            if fields[2].isdecimal():
                members = frozenset(m for m in fields[3].split(",") if m)
                groups[fields[0]] = (int(fields[2]), members)
        return cls(tuple(users), groups)

    def user(self, name: str) -> _User | None:
        return next((u for u in self.users if u.name == name), None)

    def user_by_uid(self, uid: int) -> _User | None:
        return next((u for u in self.users if u.uid == uid), None)

    def member(self, user: _User, group: str) -> bool:
        gid, members = self.groups[group]
        return user.gid == gid or user.name in members

    def gids(self, user: _User, extra: Iterable[str] = ()) -> set[int]:
        """The user's primary and supplementary groups, and the groups named in `extra`."""
        gids = {user.gid}
        for name, (gid, members) in self.groups.items():
            if user.name in members or name in extra:
                gids.add(gid)
        return gids

    def group_name(self, gid: int) -> str:
        return next((n for n, (g, _) in self.groups.items() if g == gid), str(gid))

    def user_name(self, uid: int) -> str:
        user = self.user_by_uid(uid)
        return user.name if user is not None else str(uid)


def _colon_file(path: Path, fields: int) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    rows = [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]
    return [row for row in rows if len(row) >= fields]


@dataclass(frozen=True, slots=True)
class NodeAccess:
    """A device node's owner, group and mode."""

    path: str
    uid: int
    gid: int
    mode: int

    def allows(self, uid: int, gids: set[int]) -> bool:
        """Whether a user with these ids may open it for reading and writing."""
        if uid == 0:
            return True
        if uid == self.uid:
            bits = self.mode >> 6
        elif self.gid in gids:
            bits = self.mode >> 3
        else:
            bits = self.mode
        return bits & 0o6 == 0o6

    def describe(self, accounts: Accounts) -> str:
        return (
            f"{accounts.user_name(self.uid)}:{accounts.group_name(self.gid)} "
            f"{stat.S_IMODE(self.mode):04o}"
        )


def node_access(path: str) -> NodeAccess | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return NodeAccess(os.path.realpath(path), st.st_uid, st.st_gid, st.st_mode)


def membership_problems(accounts: Accounts, uid: int, process_groups: list[int]) -> list[Problem]:
    """The posd user's missing dialout/plugdev memberships, and this user's (none for root)."""
    problems = []
    posd = accounts.user(POSD_USER)
    if posd is None:
        problems.append(
            Problem(
                f"no user {POSD_USER} on this box: posd is not installed",
                "systemd/install.sh (it makes the user posd, in groups dialout, plugdev and "
                "audio, with systemd-sysusers)",
            )
        )
    for group, what in NEEDED_GROUPS.items():
        if group not in accounts.groups:
            problems.append(
                Problem(
                    f"no group {group} on this box; it {what}",
                    f"groupadd --system {group} && usermod -aG {group} {POSD_USER}",
                )
            )
            continue
        if posd is not None and not accounts.member(posd, group):
            problems.append(
                Problem(
                    f"user {POSD_USER} is not in group {group}, which {what}",
                    f"usermod -aG {group} {POSD_USER}",
                )
            )
    if uid != 0:
        problems += _your_problems(accounts, uid, process_groups)
    return problems


def _your_problems(accounts: Accounts, uid: int, process_groups: list[int]) -> list[Problem]:
    problems = []
    you = accounts.user_by_uid(uid)
    name = you.name if you is not None else str(uid)
    for group in NEEDED_GROUPS:
        if group not in accounts.groups:
            continue
        gid = accounts.groups[group][0]
        if gid in process_groups:
            continue
        if you is not None and accounts.member(you, group):
            problems.append(
                Problem(
                    f"you ({name}) were added to group {group} after logging in; this session "
                    f"does not have it yet, so {_YOURS[group]}",
                    f"log out and in again (or run `newgrp {group}`)",
                )
            )
        else:
            problems.append(
                Problem(
                    f"you ({name}) are not in group {group}: {_YOURS[group]}",
                    f"sudo usermod -aG {group} {name}, then log out and in again "
                    "(or run `sudo posd devices`)",
                )
            )
    return problems


def posd_node_problem(
    accounts: Accounts, node: NodeAccess, device: str, fix: str
) -> Problem | None:
    """A problem when the posd user, with the unit's groups, cannot open the node."""
    posd = accounts.user(POSD_USER)
    if posd is None or node.allows(posd.uid, accounts.gids(posd, UNIT_GROUPS)):
        return None
    return Problem(
        f"user {POSD_USER} cannot open the {device}, {node.path} ({node.describe(accounts)}), "
        "even with the groups its unit gives it",
        fix,
    )
