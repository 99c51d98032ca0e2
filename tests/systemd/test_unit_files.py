"""The unit, sysusers, tmpfiles and udev files as systemd's own tools read them, and install.sh
refusing to run without root."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

WAIT_S = 10.0
ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"


ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (Debian: systemd)")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert ANALYZE is not None
    # verify checks that ExecStart exists: point it at this checkout's posd, all else as shipped.
    posd = Path(sys.executable).parent / "posd"
    unit = (SYSTEMD / "posd.service").read_text()
    assert "ExecStart=/opt/posd/venv/bin/posd run -c /etc/posd/posd.toml" in unit
    (tmp_path / "posd.service").write_text(unit.replace("/opt/posd/venv/bin/posd", str(posd)))
    proc = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(tmp_path / "posd.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "posd.service" not in proc.stderr, proc.stderr
    assert "\nLimitCORE=0\n" in unit


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (Debian: systemd)")
def test_unit_security_exposure_is_at_most_2() -> None:
    assert ANALYZE is not None
    proc = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--threshold=20", str(SYSTEMD / "posd.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    overall = [line for line in proc.stdout.splitlines() if "Overall exposure level" in line]
    assert overall, proc.stdout
    assert float(overall[0].split(":")[1].split()[0]) <= 2.0


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers missing")
def test_sysusers_and_tmpfiles_apply_to_a_fresh_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    subprocess.run(
        ["systemd-sysusers", f"--root={root}", str(SYSTEMD / "posd.sysusers")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    passwd = (root / "etc/passwd").read_text()
    group = (root / "etc/group").read_text()
    assert passwd.startswith("posd:")
    for name in ("dialout", "plugdev", "audio"):
        assert any(
            line.startswith(f"{name}:") and line.endswith(":posd") for line in group.splitlines()
        )
    subprocess.run(
        ["systemd-tmpfiles", f"--root={root}", "--create", str(SYSTEMD / "posd.tmpfiles")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert stat.S_IMODE((root / "var/lib/posd").stat().st_mode) == 0o700


def test_udev_rules_name_the_devices() -> None:
    rules = (SYSTEMD / "99-posd.rules").read_text()
    lines = [ln for ln in rules.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    pair = r'[A-Za-z_]+(\{[A-Za-z_]+\})?\s*(==|!=|\+=|=|:=)\s*"[^"]*"'

    for line in lines:
        assert re.fullmatch(rf"{pair}(,\s*{pair})*", line), line
    assert 'SYMLINK+="posd-reader"' in rules and 'SYMLINK+="posd-scanner"' in rules
    for line in lines:
        if "SYMLINK+=" in line:
            assert 'GROUP="' in line and 'MODE="0660"' in line, line


def test_install_script_refuses_without_root(tmp_path: Path) -> None:
    script = SYSTEMD / "install.sh"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    command = ["bash", str(script)]
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser to drop privileges")
        command = [runuser, "-u", "nobody", "--", *command]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=30, check=False, cwd=tmp_path
    )
    assert proc.returncode == 77
    assert "must run as root" in proc.stderr
