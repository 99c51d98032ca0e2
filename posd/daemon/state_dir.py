"""The state directory (journal and its key): created 0700, owned and usable by this process."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__package__)


class StateDirError(Exception):
    """The state directory cannot be used; the message says what to do."""


def prepare_state_dir(path: Path) -> Path:
    """Create `path` (mode 0700) if needed and check that this process can own and use it."""
    try:
        if not path.exists():
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError as exc:
        raise StateDirError(
            f"cannot create state directory {path}: {exc.strerror}; create it owned by the posd "
            "user with mode 0700, or point storage.state_dir elsewhere"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise StateDirError(f"state directory {path} exists but is not a directory")
    if st.st_uid != os.geteuid():
        raise StateDirError(
            f"state directory {path} is owned by uid {st.st_uid}, not by this process's user "
            f"(uid {os.geteuid()}); chown it to the posd user"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
        log.warning("state directory %s was mode %o; set to 0700", path, stat.S_IMODE(st.st_mode))
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise StateDirError(f"state directory {path} is not writable by this process")
    return path.resolve()
