"""`posd enroll`: the terminal's private key (0600) and a CSR for the ledger's CA.

The config need not pass `posd config check` yet: enrolment is how the missing
key and certificate files come to exist. Only the keys enrolment needs are read.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
import tomllib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from posd.config import CONFIG_ENV, DEFAULT_CONFIG, ans, config_path

DEFAULT_KEY = Path("/etc/posd/terminal.key")
ORGANIZATION = "서로e음 POS terminal"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        help="config to take the ids and key path from "
        f"(default: ${CONFIG_ENV} or {DEFAULT_CONFIG}, when it exists)",
    )
    parser.add_argument("--terminal-id", help="terminal id (ans8); default: terminal.id")
    parser.add_argument("--merchant-id", help="merchant id (ans15); default: terminal.merchant_id")
    parser.add_argument("--key", type=Path, help="private key to write; default: ledger.key_file")
    parser.add_argument("--csr", type=Path, help="CSR to write; default: the key path with .csr")
    parser.add_argument("--force", action="store_true", help="replace an existing private key")


def _config_values(path: str | None) -> tuple[dict[str, object], str | None]:
    """The [terminal] and [ledger] tables of the config, or why they could not be read."""
    if path is None:
        return {}, None
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, f"{path}: no such config file"
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return {}, f"{path}: cannot read it ({exc}); run `posd config check {path}`"
    terminal = data.get("terminal", {})
    ledger = data.get("ledger", {})
    values: dict[str, object] = {}
    if isinstance(terminal, dict):
        values["id"] = terminal.get("id")
        values["merchant_id"] = terminal.get("merchant_id")
    if isinstance(ledger, dict) and ledger.get("key_file"):
        values["key_file"] = ledger.get("key_file")
    return values, None


def _write_private(path: Path, data: bytes, force: bool) -> None:
    if force:
        path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _give_to_posd_user(path: Path) -> None:
    """Under root the daemon's user must be able to read its key; nobody else may."""
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam("posd")
    except KeyError:
        return
    os.chown(path, user.pw_uid, user.pw_gid)


def enroll(args: argparse.Namespace) -> int:
    config = args.config
    if config is None and Path(config_path()).is_file():
        config = config_path()
    values, problem = _config_values(config)
    if problem:
        print(f"posd enroll: {problem}", file=sys.stderr)
        return os.EX_NOINPUT if "no such" in problem else os.EX_CONFIG
    terminal_id = args.terminal_id or values.get("id")
    merchant_id = args.merchant_id or values.get("merchant_id")
    problems = []
    for name, value, check in (
        ("terminal id", terminal_id, ans(8, "ans8, ISO 8583 field 41")),
        ("merchant id", merchant_id, ans(15, "ans15, ISO 8583 field 42")),
    ):
        if not isinstance(value, str):
            flag = "--" + name.replace(" ", "-")
            problems.append(f"{name}: missing; give it with -c CONFIG or {flag}")
        elif (error := check(value)) is not None:
            problems.append(f"{name}: {error}")
    if problems:
        for line in problems:
            print(f"posd enroll: {line}", file=sys.stderr)
        return os.EX_CONFIG
    assert isinstance(terminal_id, str) and isinstance(merchant_id, str)

    configured_key = values.get("key_file")
    if not isinstance(configured_key, str):
        configured_key = None
    key_path = Path(args.key or configured_key or DEFAULT_KEY)
    csr_path = Path(args.csr or key_path.with_suffix(".csr"))
    if key_path.exists() and not args.force:
        print(
            f"posd enroll: {key_path} exists; a new key needs a new certificate from the "
            "ledger's CA, so give --force only if that is what you want",
            file=sys.stderr,
        )
        return os.EX_CANTCREAT

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, terminal_id),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, merchant_id),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        key_path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(key_path, key_pem, args.force)
        _give_to_posd_user(key_path)
        csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    except OSError as exc:
        print(f"posd enroll: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return os.EX_CANTCREAT
    print(f"private key: {key_path} (mode 0600, never leaves this box)")
    print(f"certificate request: {csr_path} (CN={terminal_id}, OU={merchant_id})")
    print(
        "next: send the request to 서로e음 operations; put the certificate they return at "
        "ledger.cert_file and their CA at ledger.ca_file, then `posd config check`."
    )
    return os.EX_OK
