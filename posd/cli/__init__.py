"""The `posd` commands (run, config, demo, devices, check, chime, status, saf, enroll,
ledger-sim, fleet): one argparse tree, sysexits exit codes. The entry point is `posd.cli:main`.

Modules:
- `commands`: `main` and `build_parser`, the argparse tree; each command's module is
  imported only when it runs.
- `config`: `posd config check` and `posd config example`.
- `devices`: `posd devices`, what is plugged in and whether the config's devices are there,
  with the config and udev lines and the permission fixes; its work is in `device_survey`
  (gathering), `device_checks` (against the config), `device_advice` (what to do),
  `device_access` (users, groups, device node modes), `device_report` (text, JSON), and
  `udev_local` (the 98-posd-local.rules line formats).
- `check`: `posd check`, the "ready to leave" check; its lines are `ready_checks.CHECKS`.
- `chime`: `posd chime`, the order chime played on the configured output or written to a WAV.
- `status`: `posd status` and `posd saf`, asked of the running daemon.
- `enroll`: `posd enroll`, the terminal's private key and a CSR for the ledger's CA.
- `ledger_sim`: `posd ledger-sim`, the reference ledger as a standalone server.
- `demo`: `posd demo`, the scripted shift on simulated devices and the reference ledger.
"""

from posd.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
