"""What posd.service promises beyond `systemd-analyze verify` and the exposure score (those are
checked in test_unit_files.py): device groups that resolve, a crash loop that stops,
exit statuses that are not retried, a configuration directory left as install.sh made it."""

from __future__ import annotations

import re
from pathlib import Path

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
# DeviceAllow=char-GROUP -> the module that registers GROUP in /proc/devices (None: the kernel's).
GROUP_MODULES = {
    "ttyUSB": "usbserial",
    "ttyACM": "cdc_acm",
    "alsa": "snd",
    "ttyS": None,
    "usb_device": None,
    "hidraw": None,
}


def _unit() -> dict[tuple[str, str], list[str]]:
    """(section, key) -> every value given, in order (systemd keys may repeat)."""
    settings: dict[tuple[str, str], list[str]] = {}
    section = ""
    for raw in (SYSTEMD / "posd.service").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if m := re.fullmatch(r"\[(\w+)\]", line):
            section = m[1]
            continue
        key, _, value = line.partition("=")
        settings.setdefault((section, key), []).append(value)
    return settings


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|min)?", value)
    assert m, value
    return float(m[1]) * {"ms": 0.001, "s": 1.0, "min": 60.0, None: 1.0}[m[2]]


def test_every_device_group_allowed_is_loaded_before_start() -> None:
    unit = _unit()
    wants = " ".join(unit[("Unit", "Wants")]).split()
    after = " ".join(unit[("Unit", "After")]).split()
    groups = [v.split()[0].removeprefix("char-") for v in unit[("Service", "DeviceAllow")]]
    assert set(groups) == set(GROUP_MODULES)
    for group in groups:
        module = GROUP_MODULES[group]
        if module is not None:
            assert f"modprobe@{module}.service" in wants, group
            assert f"modprobe@{module}.service" in after, group


def test_a_crash_loop_hits_the_start_limit() -> None:
    unit = _unit()
    interval = _seconds(unit[("Unit", "StartLimitIntervalSec")][-1])
    burst = int(unit[("Unit", "StartLimitBurst")][-1])
    restart = _seconds(unit[("Service", "RestartSec")][-1])
    assert unit[("Service", "Restart")] == ["on-failure"]
    # The (burst+1)-th start of a posd dying at once comes burst x RestartSec after the first;
    # it must fall inside the window, with room for a start-up of several seconds.
    slack_per_start = interval / burst - restart
    assert slack_per_start >= 5.0, (interval, burst, restart)
    # ... while a posd that served a minute or more between crashes is never given up on.
    assert 60.0 + restart >= interval / burst


def test_statuses_restarting_cannot_fix_are_not_retried() -> None:
    prevented = " ".join(_unit()[("Service", "RestartPreventExitStatus")]).split()
    # 66 no config, 75 state dir held by another posd, 78 config error (operations.md).
    assert {"66", "75", "78"} <= set(prevented)


def test_the_configuration_directory_mode_is_the_one_tmpfiles_gives() -> None:
    unit = _unit()
    assert unit[("Service", "ConfigurationDirectory")] == ["posd"]
    mode = unit[("Service", "ConfigurationDirectoryMode")][-1]
    tmpfiles = (SYSTEMD / "posd.tmpfiles").read_text()
    line = re.search(r"^d\s+/etc/posd\s+(\d+)\s+(\S+)\s+(\S+)", tmpfiles, re.M)
    assert line is not None
    assert (mode, line[2], line[3]) == (line[1], "root", "posd")
    # The daemon's group reads but never writes the secrets' directory.
    assert int(mode, 8) & 0o027 == 0o000 and int(mode, 8) & 0o050 == 0o050
