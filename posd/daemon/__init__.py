"""`posd run`: the config loaded, the state dir opened, every component run under one
supervisor, systemd told how it goes (READY, STATUS, RELOADING, WATCHDOG).

Modules:
- `daemon`: `Daemon` (signals, reload, watchdog, an orderly stop) and `run_daemon`, the
  command with its exit codes; `register_config_secrets`, the config's secrets masked in logs.
- `stack`: `build_components`, the one place components are built, and `payment_components`,
  the payment stack (journal, reader, scanner, ledger link, SAF sender, engine, local API);
  beside it the order alerts (found by the API through `orders_lookup`) and, with
  `mqtt.enabled`, monitoring, which finds the running parts by name; the one state builder
  of the process.
- `state_dir`: `prepare_state_dir`, the state directory created 0700 and checked usable;
  `StateDirLock`, one posd per state directory (`StateDirLocked`: another one holds it).
- `limits`: `raise_open_files_limit`, the open-files limit raised to its hard limit at start.
"""

from posd.daemon.daemon import (
    STOP_TIMEOUT_S,
    Daemon,
    disable_core_dumps,
    register_config_secrets,
    run_daemon,
    section_fingerprints,
)
from posd.daemon.limits import OpenFilesLimit, raise_open_files_limit
from posd.daemon.stack import (
    STACK_SECTIONS,
    BuildComponents,
    build_components,
    orders_lookup,
    payment_components,
)
from posd.daemon.state_dir import (
    LOCK_FILE_NAME,
    StateDirError,
    StateDirLock,
    StateDirLocked,
    prepare_state_dir,
)

__all__ = [
    "LOCK_FILE_NAME",
    "STACK_SECTIONS",
    "STOP_TIMEOUT_S",
    "BuildComponents",
    "Daemon",
    "OpenFilesLimit",
    "StateDirError",
    "StateDirLock",
    "StateDirLocked",
    "build_components",
    "disable_core_dumps",
    "orders_lookup",
    "payment_components",
    "prepare_state_dir",
    "raise_open_files_limit",
    "register_config_secrets",
    "run_daemon",
    "section_fingerprints",
]
