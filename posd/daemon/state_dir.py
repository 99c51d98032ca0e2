"""The state directory (journal and its key): created 0700, owned and usable by this process,
and locked so that one posd at a time runs on it (`StateDirLock`)."""

from __future__ import annotations

import fcntl
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


LOCK_FILE_NAME = "posd.lock"


class StateDirLocked(Exception):
    """Another posd holds the state directory's lock; `pid` is the holder's, when known."""

    def __init__(self, path: Path, pid: int | None) -> None:
        holder = f"posd PID {pid}" if pid is not None else "another posd (PID unknown)"
        super().__init__(
            f"{holder} already runs on state directory {path.parent} (lock {path}); "
            "one posd per state directory: stop the other one (systemctl stop posd, or "
            f"kill {pid if pid is not None else 'it'}) or give this one another "
            "storage.state_dir"
        )
        self.path = path
        self.pid = pid


class StateDirLock:
    """The exclusive lock of one state directory, held as long as this object's file is open.

    flock(2) on `posd.lock`: the kernel drops it when the process dies however it dies (kill -9
    included), so a crash never leaves a stale lock, and nothing is ever deleted to take it.
    The file holds the holder's PID, for the message a second posd gives.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, state_dir: Path) -> StateDirLock:
        """Take the lock or raise StateDirLocked (naming the holder's PID) at once; never waits.

        The file is opened without O_TRUNC and written only once the lock is held, so a second
        posd changes nothing, not even the holder's PID in it.
        """
        path = state_dir / LOCK_FILE_NAME
        try:
            # O_CLOEXEC (Python's default): a child process (aplay) must not inherit the lock.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateDirError(
                f"cannot open the lock file {path}: {exc.strerror}; the state directory must be "
                "writable by the posd user"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StateDirLocked(path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            # The lock is what counts; the PID is only for another posd's message.
            log.warning("cannot write posd's PID into %s: %s", path, exc.strerror)
        return cls(fd, path)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdecimal() else None
