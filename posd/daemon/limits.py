"""The process's open-files limit: raised to its hard limit at start, so that every local API
connection posd accepts (capped well below it: posd.api) still leaves descriptors for the
journal, the ledger link, the devices and the audio player.

Under systemd the unit's LimitNOFILE= sets both limits and its system-call filter refuses
setrlimit; the limit then stays as the unit set it, and the log says so.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

log = logging.getLogger(__package__)

# Linux never reports an infinite hard limit for open files; elsewhere, this is plenty.
_NO_HARD_LIMIT_TARGET = 1 << 16


@dataclass(frozen=True, slots=True)
class OpenFilesLimit:
    soft: int
    hard: int
    before: int
    error: str | None = None


def raise_open_files_limit() -> OpenFilesLimit:
    """Raise RLIMIT_NOFILE's soft limit to its hard limit; what it is afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return OpenFilesLimit(soft, hard, soft)
    target = hard if hard != resource.RLIM_INFINITY else _NO_HARD_LIMIT_TARGET
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:
        return OpenFilesLimit(soft, hard, soft, str(exc))
    return OpenFilesLimit(*resource.getrlimit(resource.RLIMIT_NOFILE), before=soft)


def log_open_files_limit(limit: OpenFilesLimit) -> None:
    if limit.error is not None:
        log.warning(
            "open-files limit stays %d (hard limit %d): raising it failed (%s); "
            "set LimitNOFILE= in the unit",
            limit.soft,
            limit.hard,
            limit.error,
        )
    elif limit.soft != limit.before:
        log.info("open-files limit raised from %d to %d", limit.before, limit.soft)
