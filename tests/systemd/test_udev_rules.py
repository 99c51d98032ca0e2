"""systemd/99-posd.rules and 98-posd-local.rules claim known reader and scanner models only.

The policy checks (tests/systemd/udev_lint.py) run everywhere; `udevadm verify` (systemd >= 254)
runs where it exists and checks the same files with udev's own parser. The checker's own bad
examples go through udevadm too, so the two parsers are held to agree.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.systemd.udev_lint import (
    BRIDGE_CHIPS,
    LOCAL_LINE,
    RulesError,
    check_local_line,
    claim_problems,
    parse_rules,
)

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
SHIPPED = ("99-posd.rules", "98-posd-local.rules")


def _rules(name: str) -> str:
    return (SYSTEMD / name).read_text()


def _udevadm_verify() -> str | None:
    """udevadm, if it has the verify verb (systemd >= 254)."""
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        return None
    proc = subprocess.run(
        [udevadm, "verify", "--help"], capture_output=True, timeout=30, check=False
    )
    return udevadm if proc.returncode == 0 else None


UDEVADM = _udevadm_verify()
needs_udevadm_verify = pytest.mark.skipif(
    UDEVADM is None, reason="no udevadm with `verify` (systemd >= 254); the policy checks ran"
)


def _verify(path: Path) -> subprocess.CompletedProcess[str]:
    assert UDEVADM is not None
    return subprocess.run(
        [UDEVADM, "verify", "--resolve-names=never", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _claims(text: str, name: str) -> list[tuple[str, str, str, str]]:
    """(vendor, product, subsystem, role) for every id a file claims."""
    out = []
    for rule in parse_rules(text, name):
        values = {(t.key, t.attr): t.value for t in rule.tokens}
        role = values.get(("ENV", "POSD_DEVICE"))
        if role is None or ("ATTRS", "idVendor") not in values:
            continue
        for product in values[("ATTRS", "idProduct")].split("|"):
            out.append((values[("ATTRS", "idVendor")], product, values[("SUBSYSTEM", None)], role))
    return out


# -- the shipped files --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_rules_parse_and_keep_the_policy(name: str) -> None:
    rules = parse_rules(_rules(name), name)
    assert claim_problems(rules) == []


def test_every_claim_is_a_known_model_with_its_source_and_no_bridge_chip() -> None:
    text = _rules("99-posd.rules")
    claims = _claims(text, "99-posd.rules")
    assert {role for *_, role in claims} == {"reader", "scanner"}
    ids = [(v, p) for v, p, *_ in claims]
    assert len(ids) == len(set(ids)), "an id is claimed twice (two roles or two modes)"
    assert not set(ids) & BRIDGE_CHIPS
    # Each claim (or run of claims) follows the comment naming its models and their source.
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if 'ENV{POSD_DEVICE}="' not in line or line.startswith("#"):
            continue
        j = i - 1
        while 'ENV{POSD_DEVICE}="' in lines[j] and not lines[j].startswith("#"):
            j -= 1
        comment = []
        while lines[j].startswith("#"):
            comment.append(lines[j])
            j -= 1
        assert comment, line
        sources = r"usb\.ids|ftdi_sio|Integration Guide"
        assert re.search(sources, " ".join(c.lstrip("# ") for c in reversed(comment))), line


def test_the_actions_name_only_claimed_devices_and_keep_modemmanager_off_ttys() -> None:
    for rule in parse_rules(_rules("99-posd.rules"), "99-posd.rules"):
        keys = {(t.key, t.attr) for t in rule.tokens}
        if ("GROUP", None) not in keys:
            continue
        assert ("ENV", "POSD_DEVICE") in keys, rule.where
        if any(t.is_("SUBSYSTEM", op="==") and t.value == "tty" for t in rule.tokens):
            assert any(t.is_("ENV", "ID_MM_DEVICE_IGNORE", "=") for t in rule.tokens), rule.where


def test_the_local_template_holds_no_rule_but_documents_each_form() -> None:
    text = _rules("98-posd-local.rules")
    assert parse_rules(text, "98-posd-local.rules") == []
    examples = [ln[2:] for ln in text.splitlines() if ln.startswith("# SUBSYSTEM==")]
    assert len(examples) == 3
    for line in examples:
        assert check_local_line(line) == [], line
    assert any("ATTRS{serial}==" in ln for ln in examples)
    assert any("ENV{ID_PATH}==" in ln for ln in examples)
    assert any('SUBSYSTEM=="usb|hidraw"' in ln for ln in examples)


# -- the checker can fail -----------------------------------------------------------------------

POLICY_BREACHES = [
    ('SUBSYSTEM=="tty", ATTRS{idVendor}=="0acd", ENV{POSD_DEVICE}="reader"', "vendor-only"),
    (
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001", '
        'ENV{POSD_DEVICE}="reader"',
        "bare USB-serial bridge chip id 0403:6001",
    ),
    (
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="1a86", ATTRS{idProduct}=="5523|7523", '
        'ENV{POSD_DEVICE}="reader"',
        "bare USB-serial bridge chip id 1a86:5523, 1a86:7523",
    ),
    (
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="10c4", ATTRS{idProduct}=="ea60", '
        'ATTRS{serial}=="*", ENV{POSD_DEVICE}="reader"',
        "bare USB-serial bridge chip id 10c4:ea60",
    ),
    (
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6015", '
        'ATTRS{product}=="FT230X Basic UART", ENV{POSD_DEVICE}="reader"',
        "bare USB-serial bridge chip id 0403:6015",
    ),
    (
        'SUBSYSTEM=="tty", ENV{ID_VENDOR_ID}=="067b", ENV{ID_MODEL_ID}=="2303", '
        'ENV{POSD_DEVICE}="reader"',
        "bare USB-serial bridge chip id 067b:2303",
    ),
    (
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="04*", ATTRS{idProduct}=="6001", '
        'ENV{POSD_DEVICE}="reader"',
        "4 lower-case hex digits",
    ),
    (
        'SUBSYSTEM=="tty", ATTRS{idProduct}=="0630", ENV{POSD_DEVICE}="reader"',
        "product id without its vendor",
    ),
    ('SUBSYSTEM=="tty", ENV{POSD_DEVICE}="reader"', "without its vendor and product id"),
    (
        'SUBSYSTEM=="usb|hidraw", ATTRS{idVendor}=="0acd", ATTRS{idProduct}=="0630", '
        'ENV{POSD_DEVICE}="reader"',
        'a reader is claimed with SUBSYSTEM=="tty"',
    ),
    (
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001", '
        'ATTRS{interface}=="Card Reader", ENV{POSD_DEVICE}="reader"',
        "never matches",
    ),
    (
        'SUBSYSTEM=="tty", SYMLINK+="posd-reader", GROUP="dialout", MODE="0660"',
        "only on a line matching",
    ),
    (
        'ENV{POSD_DEVICE}=="scanner", SUBSYSTEM=="tty", SYMLINK+="posd-reader", MODE="0660"',
        "a scanner is named /dev/posd-scanner",
    ),
    ('ATTRS{idVendor}!="0403", GOTO="skip"\nLABEL="skip"', "vendor-only"),
]


@pytest.mark.parametrize(("line", "expected"), POLICY_BREACHES)
def test_the_checker_refuses_what_the_policy_forbids(line: str, expected: str) -> None:
    problems = claim_problems(parse_rules(line, "bad.rules"))
    assert any(expected in p for p in problems), problems


DEVICE_SPECIFIC = [
    'SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001", '
    'ATTRS{serial}=="A10K3XYZ", ENV{POSD_DEVICE}="reader"',
    'SUBSYSTEM=="tty", ATTRS{idVendor}=="1a86", ATTRS{idProduct}=="7523", '
    'ENV{ID_PATH}=="pci-0000:00:14.0-usb-0:2:1.0", ENV{POSD_DEVICE}="reader"',
    'SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001", '
    'ATTRS{product}=="ACME EMV Reader", ENV{POSD_DEVICE}="reader"',
    'SUBSYSTEM=="tty", ENV{ID_VENDOR_ID}=="0403", ENV{ID_MODEL_ID}=="6010", '
    'ATTRS{interface}=="ACME Card Reader", ENV{POSD_DEVICE}="reader"',
]


@pytest.mark.parametrize("line", DEVICE_SPECIFIC)
def test_the_checker_accepts_one_device_behind_a_bridge_chip(line: str) -> None:
    assert claim_problems(parse_rules(line, "local.rules")) == []


def test_a_local_line_must_have_the_documented_form() -> None:
    good = DEVICE_SPECIFIC[0]
    assert LOCAL_LINE.fullmatch(good)
    assert check_local_line(good) == []
    # Right policy, wrong form: `posd devices` must print exactly the documented line.
    assert check_local_line(good.replace(", ", ",  ")) != []
    assert check_local_line(good.replace('"A10K3XYZ"', '"A10K 3XYZ"')) != []
    assert check_local_line(good.replace('"6001"', '"6001|6015"')) != []
    assert check_local_line(DEVICE_SPECIFIC[2]) != []


SYNTAX_ERRORS = [
    ('SUBSYSTEM="tty", SYMLINK+="x"', "does not take the operator ="),
    ('GROUP=="dialout"', "does not take the operator =="),
    ('ATTRS=="0403"', "needs an {attribute}"),
    ('KERNEL{x}=="ttyUSB0"', "takes no {attribute}"),
    ('FOO=="bar"', "unknown key FOO"),
    ('KERNEL=="ttyUSB0" SYMLINK+="x"', "one comma and a space"),
    ('KERNEL=="ttyUSB0",SYMLINK+="x"', "one comma and a space"),
    ('KERNEL=="ttyUSB0', "cannot read"),
    ('KERNEL=="ttyUSB0", GOTO="nowhere"', "has no LABEL"),
    ('ENV{DEVNAME}="x"', "cannot be set"),
    ('KERNEL=="ttyUSB0", OPTIONS+="bogus"', "does not know"),
    ('NAME+="x"', "does not take the operator +="),
    ('IMPORT{nonsense}="x"', "expected one of"),
]


# udev takes these at parse time and fails on the device later; the reader refuses them now.
STRICTER_THAN_UDEV = [('MODE="rw"', "not an octal mode")]


@pytest.mark.parametrize(("line", "expected"), SYNTAX_ERRORS + STRICTER_THAN_UDEV)
def test_the_reader_refuses_what_udev_refuses(line: str, expected: str) -> None:
    with pytest.raises(RulesError, match=re.escape(expected)):
        parse_rules(line, "bad.rules")


# -- udev's own parser, where it can run ---------------------------------------------------------


@needs_udevadm_verify
def test_udevadm_verify_accepts_the_shipped_files_and_the_local_forms(tmp_path: Path) -> None:
    for name in SHIPPED:
        proc = _verify(SYSTEMD / name)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    local = tmp_path / "98-posd-local.rules"
    text = _rules("98-posd-local.rules")
    local.write_text("\n".join(ln[2:] for ln in text.splitlines() if ln.startswith("# SUBSYSTEM")))
    proc = _verify(local)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_udevadm_verify
@pytest.mark.parametrize(("line", "expected"), SYNTAX_ERRORS)
def test_udevadm_verify_refuses_the_same_lines(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "bad.rules"
    path.write_text(line + "\n")
    proc = _verify(path)
    assert proc.returncode != 0, f"udevadm accepts {line!r}; the reader says: {expected}"
