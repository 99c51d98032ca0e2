"""The ledger's and broker's certificate and key files, as the config check reads them: with
the OpenSSL loader the links use (posd.config.files), not cryptography's x509 package."""

from __future__ import annotations

import datetime
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from posd.config import ConfigError, load_config
from tests.helpers.configs import TlsFiles, write_config, write_secret, write_tls_files


def _problems(path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return {p.key_path: p.message for p in caught.value.problems}


def _ledger(tls: TlsFiles, **files: Path) -> dict[str, object]:
    section: dict[str, object] = {
        "tls": True,
        "ca_file": str(tls.ca_file),
        "cert_file": str(tls.client_cert_file),
        "key_file": str(tls.client_key_file),
    }
    return section | {name: str(path) for name, path in files.items()}


def test_a_ca_bundle_with_comments_in_any_encoding_loads(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path / "tls")
    bundle = tmp_path / "bundle.pem"
    # The Mozilla bundle's form: a UTF-8 "# Issuer:" line above each certificate.
    bundle.write_bytes(
        "# Issuer: CN=NetLock Arany (Class Gold) Főtanúsítvány\n".encode()
        + tls.ca_file.read_bytes()
        + b"\n# a Latin-1 comment: \xe9\n"
        + tls.ca_file.read_bytes()
    )
    config = load_config(write_config(tmp_path, ledger=_ledger(tls, ca_file=bundle)))
    assert config.ledger.ca_file == bundle


def test_a_ca_bundle_with_one_broken_certificate_is_refused(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path / "tls")
    good = tls.ca_file.read_text()
    lines = good.splitlines()
    lines[2] = "A" * len(lines[2])
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(good + "\n".join(lines) + "\n")
    found = _problems(write_config(tmp_path, ledger=_ledger(tls, ca_file=bundle)))
    assert found.keys() == {"ledger.ca_file"}
    assert "holds no PEM certificate" in found["ledger.ca_file"]


def test_a_key_encrypted_in_the_traditional_form_is_named_encrypted(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path / "tls")
    key = serialization.load_pem_private_key(tls.client_key_file.read_bytes(), password=None)
    encrypted = write_secret(
        tmp_path / "encrypted.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(b"pw"),
        ),
    )
    assert b"Proc-Type: 4,ENCRYPTED" in encrypted.read_bytes()
    found = _problems(write_config(tmp_path, ledger=_ledger(tls, key_file=encrypted)))
    assert found.keys() == {"ledger.key_file"}
    assert "is encrypted, expected an unencrypted PEM private key" in found["ledger.key_file"]


def test_a_broken_key_under_a_key_header_holds_no_key(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path / "tls")
    broken = write_secret(
        tmp_path / "broken.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    found = _problems(write_config(tmp_path, ledger=_ledger(tls, key_file=broken)))
    assert found.keys() == {"ledger.key_file"}
    assert "holds no PEM private key" in found["ledger.key_file"]


def test_a_pair_openssl_refuses_is_refused_by_the_check_too(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "small")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "small.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file = write_secret(
        tmp_path / "small.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert_file, key_file)
    except ssl.SSLError:
        pass
    else:
        pytest.skip("this machine's OpenSSL accepts a 1024-bit RSA key")
    tls = write_tls_files(tmp_path / "tls")
    found = _problems(
        write_config(tmp_path, ledger=_ledger(tls, cert_file=cert_file, key_file=key_file))
    )
    assert found.keys() == {"ledger.cert_file"}
    assert "is refused by OpenSSL" in found["ledger.cert_file"]


def test_the_daemon_checks_its_tls_files_without_cryptography_x509(tmp_path: Path) -> None:
    # Importing cryptography.x509 and serialization costs the daemon 1.5 MB of RSS.
    path = write_config(tmp_path, ledger={"tls": True}, mqtt={"tls": True})
    probe = (
        "import sys\n"
        "from posd.cli.commands import daemon_entry\n"
        "from posd.config import load_config\n"
        "daemon_entry()\n"
        f"config = load_config({str(path)!r})\n"
        "assert config.ledger.tls and config.mqtt.tls\n"
        "print(sorted(m for m in sys.modules if m.startswith(('cryptography.x509', "
        "'cryptography.hazmat.primitives.serialization'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
