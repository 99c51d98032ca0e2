"""`posd enroll`: a 0600 key and a CSR the ledger's CA can sign, and nothing secret printed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from posd.cli import main

CONFIG = """\
[terminal]
id = "T0000042"
merchant_id = "M00000000000042"

[ledger]
host = "ledger.example"
key_file = "{key}"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "posd.toml"
    path.write_text(CONFIG.format(key=tmp_path / "keys" / "terminal.key"))
    return path


def test_enroll_writes_a_private_key_0600_and_a_matching_csr(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["enroll", "-c", str(config)]) == 0
    key_path = tmp_path / "keys" / "terminal.key"
    csr_path = tmp_path / "keys" / "terminal.csr"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "T0000042"
    assert (
        csr.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
        == "M00000000000042"
    )
    eku = csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    public = csr.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.public_numbers() == key.public_key().public_numbers()
    out = capsys.readouterr()
    assert "PRIVATE KEY" not in out.out + out.err
    assert str(key_path) in out.out


def test_enroll_refuses_to_replace_a_key_without_force(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["enroll", "-c", str(config)]) == 0
    key_path = tmp_path / "keys" / "terminal.key"
    first = key_path.read_bytes()
    assert main(["enroll", "-c", str(config)]) == 73
    assert key_path.read_bytes() == first
    assert "--force" in capsys.readouterr().err
    assert main(["enroll", "-c", str(config), "--force"]) == 0
    assert key_path.read_bytes() != first
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_enroll_flags_override_the_config_and_are_validated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "t.key"
    args = ["enroll", "--key", str(key), "--merchant-id", "M00000000000001"]
    assert main([*args, "--terminal-id", "T1"]) == 78
    err = capsys.readouterr().err
    assert "terminal id" in err and "exactly 8" in err
    assert not key.exists()
    assert main([*args, "--terminal-id", "T0000009"]) == 0
    csr = x509.load_pem_x509_csr((tmp_path / "t.csr").read_bytes())
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "T0000009"


def test_enroll_without_ids_says_how_to_give_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSD_CONFIG", str(tmp_path / "absent.toml"))
    assert main(["enroll", "--key", str(tmp_path / "k")]) == 78
    err = capsys.readouterr().err
    assert "--terminal-id" in err and "--merchant-id" in err


def test_enroll_with_a_missing_or_broken_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["enroll", "-c", str(tmp_path / "nope.toml")]) == 66
    assert "no such config file" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("[terminal\n")
    assert main(["enroll", "-c", str(broken)]) == 78
    assert "posd config check" in capsys.readouterr().err
