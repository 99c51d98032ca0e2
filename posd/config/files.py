"""Checks on the files a config names: certificates, keys and secrets.

Messages here describe a file by its path and shape only; a secret's content never appears in
one, since these messages end up on screens, in logs and in MQTT events.

Certificates and keys are checked with the `ssl` module, the OpenSSL loader the ledger and
MQTT links use, so what passes here is what they load; not with cryptography's x509 and
serialization packages, which would add 1.5 MB to the daemon's RSS for this check alone.
"""

from __future__ import annotations

import os
import re
import ssl
import stat
from pathlib import Path

MAX_FILE_BYTES = 1 << 20
MAC_KEY_HEX_CHARS = 64
MIN_TOKEN_CHARS = 16
# Others get no access to a secret; the group may read it (install.sh: root:posd 0640).
OTHERS_ACCESS = 0o007
# A value this long made only of hex/base64/base64url characters, with no "/" or ".", reads as a
# pasted key, token or password rather than a file name.
_MIN_SECRET_LOOKING_CHARS = 16
_SECRET_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+=-_")
# PEM blocks (RFC 7468), found wherever they are in a file: text around them (comments, a
# bundle's "# Issuer:" lines in any encoding) is not theirs to judge.
_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN (?:X509 )?CERTIFICATE-----.*?-----END (?:X509 )?CERTIFICATE-----", re.DOTALL
)
_PEM_PRIVATE_KEY = re.compile(rb"-----BEGIN (RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----")
# PKCS #8 encrypted, or the traditional form's RFC 1421 header.
_PEM_ENCRYPTED_KEY = re.compile(
    rb"-----BEGIN ENCRYPTED PRIVATE KEY-----|-----BEGIN (RSA |EC |DSA )PRIVATE KEY-----"
    rb"\r?\nProc-Type: *4, *ENCRYPTED"
)


_CERT_EXPECTED = "expected this terminal's certificate"


class FileProblem(Exception):
    """What is wrong with a named file, phrased for `key.path: <message>`."""


class FileAccessProblem(FileProblem):
    """The file cannot be read at all, so the message says nothing of what it should hold."""


def looks_like_pasted_secret(value: str) -> bool:
    """Whether a `*_file` value is more likely a key, token or password than a file name.

    Used only for values that name no existing file, so a real (odd) file name is never refused
    for its looks; what this decides is whether a message may quote the value.
    """
    if "\n" in value or "-----BEGIN" in value:
        return True
    return len(value) >= _MIN_SECRET_LOOKING_CHARS and set(value) <= _SECRET_ALPHABET


def read_secret_file(path: Path) -> bytes:
    """Like read_small_file, for a file holding a secret: refused while other users can open it."""
    data = read_small_file(path)
    check_closed_to_others(path)
    return data


def check_closed_to_others(path: Path) -> None:
    """FileProblem unless other users (not owner or group) have no access to the file."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise FileAccessProblem(f"{path} cannot be read ({exc.strerror})") from None
    if mode & OTHERS_ACCESS:
        raise FileProblem(
            f"{path} is open to other users (mode {stat.S_IMODE(mode):04o}), expected no access "
            f"for others: run `chmod 640 {path}` (owner root or posd, group posd)"
        )


def read_small_file(path: Path) -> bytes:
    """The bytes of a regular file this process can read, or FileProblem saying why not."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileAccessProblem(f"{path} does not exist") from None
    except PermissionError:
        raise FileAccessProblem(
            f"{path} cannot be reached: permission denied on a directory"
        ) from None
    except OSError as exc:
        raise FileAccessProblem(f"{path} cannot be read ({exc.strerror})") from None
    # A FIFO or device would block or never end; only regular files hold config material.
    if stat.S_ISDIR(info.st_mode):
        raise FileAccessProblem(f"{path} is a directory, expected a file")
    if not stat.S_ISREG(info.st_mode):
        raise FileAccessProblem(f"{path} is not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise FileAccessProblem(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except PermissionError:
        raise FileAccessProblem(
            f"{path} is not readable by this process (uid {os.getuid()}); "
            "give the posd user read access"
        ) from None
    except OSError as exc:
        raise FileAccessProblem(f"{path} cannot be read ({exc.strerror})") from None


def _strip_one_newline(data: bytes) -> bytes:
    for ending in (b"\r\n", b"\n"):
        if data.endswith(ending):
            return data[: -len(ending)]
    return data


def _one_text(path: Path, data: bytes, encoding: str, undecodable: str, expected: str) -> str:
    """A secret file's non-empty text without one trailing newline."""
    try:
        text = _strip_one_newline(data).decode(encoding)
    except UnicodeDecodeError:
        raise FileProblem(f"{path} {undecodable}, {expected}") from None
    if not text:
        raise FileProblem(f"{path} is empty, {expected}")
    return text


def parse_mac_key(path: Path, data: bytes) -> bytes:
    """The 32-byte MAC key from a file of exactly 64 hex characters and an optional newline."""
    body = _strip_one_newline(data)
    expected = (
        f"expected exactly {MAC_KEY_HEX_CHARS} hexadecimal characters and an optional newline"
    )
    if len(body) != MAC_KEY_HEX_CHARS:
        raise FileProblem(f"{path} holds {len(body)} characters, {expected}")
    try:
        return bytes.fromhex(body.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise FileProblem(f"{path} holds a character that is not hexadecimal, {expected}") from None


def parse_api_token(path: Path, data: bytes) -> str:
    """A bearer token: one line of at least MIN_TOKEN_CHARS visible ASCII characters."""
    expected = (
        f"expected one line of at least {MIN_TOKEN_CHARS} visible ASCII characters "
        "(e.g. from `openssl rand -hex 32`)"
    )
    token = _one_text(path, data, "ascii", "holds non-ASCII bytes", expected)
    if not all("!" <= char <= "~" for char in token):
        raise FileProblem(f"{path} holds spaces or control characters, {expected}")
    if len(token) < MIN_TOKEN_CHARS:
        raise FileProblem(f"{path} holds a token of {len(token)} characters, {expected}")
    return token


def parse_password(path: Path, data: bytes) -> str:
    """A broker password: the file's UTF-8 text without one trailing newline."""
    expected = "expected the broker password as UTF-8 text"
    return _one_text(path, data, "utf-8", "is not UTF-8 text", expected)


def holds_pem_certificates(data: bytes) -> bool:
    """Whether data holds at least one PEM certificate and every one of them parses."""
    blocks = [match.group(0) for match in _PEM_CERTIFICATE.finditer(data)]
    if not blocks:
        return False
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(
            cadata=b"\n".join(blocks).decode("ascii")
        )
    except (ssl.SSLError, ValueError):
        return False
    return True


def check_ca_file(path: Path) -> None:
    if not holds_pem_certificates(read_small_file(path)):
        raise FileProblem(
            f"{path} holds no PEM certificate, expected the CA certificate(s) in PEM form"
        )


class _Encrypted(Exception):
    """OpenSSL asked for the key's password."""


def _no_password() -> bytes:
    raise _Encrypted


def check_cert_and_key(cert_path: Path, key_path: Path) -> tuple[str | None, str | None]:
    """What is wrong with the client certificate file and with its key file (None: fine).

    The key is parsed, and matched to the certificate, by loading the pair as the ledger link
    does; while the certificate is wrong, only the key's PEM form and mode are checked."""
    cert_problem: str | None = None
    try:
        if not holds_pem_certificates(read_small_file(cert_path)):
            cert_problem = f"{cert_path} holds no PEM certificate, {_CERT_EXPECTED}"
    except FileProblem as exc:
        cert_problem = str(exc)
    try:
        key_data = read_small_file(key_path)
    except FileProblem as exc:
        return cert_problem, str(exc)
    encrypted = f"{key_path} is encrypted, expected an unencrypted PEM private key"
    if _PEM_ENCRYPTED_KEY.search(key_data):
        return cert_problem, encrypted
    no_key = f"{key_path} holds no PEM private key, expected one"
    if not _PEM_PRIVATE_KEY.search(key_data):
        return cert_problem, no_key
    # Checked once the file proved to hold a key: a wrong file needs another fix than chmod.
    try:
        check_closed_to_others(key_path)
    except FileProblem as exc:
        return cert_problem, str(exc)
    if cert_problem is not None:
        return cert_problem, None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
            cert_path, key_path, password=_no_password
        )
    except _Encrypted:
        return None, encrypted
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return None, f"{key_path} is not the private key of the certificate in {cert_path}"
        if exc.library in ("SSL", "PEM") and exc.reason in (None, "PEM_LIB"):
            return None, no_key
        # The pair parses but OpenSSL refuses it (a key too small, a weak signature): the
        # link would refuse it too.
        return f"{cert_path} is refused by OpenSSL ({exc.reason}), {_CERT_EXPECTED}", None
    except OSError as exc:
        return None, f"{key_path} cannot be read ({exc.strerror})"
    return None, None


def check_state_dir(path: Path) -> None:
    """The state directory may be absent (posd creates it) but, if present, must be usable."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FileProblem(f"{path} cannot be reached ({exc.strerror})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise FileProblem(f"{path} exists and is not a directory")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise FileProblem(f"{path} is not writable by this process (uid {os.getuid()})")


def check_socket_path(path: Path) -> None:
    """Where posd makes the API socket: absent, or a socket (a stale one is replaced); its
    directory absent (posd creates it) or a directory."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        raise FileProblem(f"{path} cannot be reached ({exc.strerror})") from None
    else:
        if stat.S_ISDIR(info.st_mode):
            raise FileProblem(
                f"{path} is a directory; expected the path of the socket file posd makes, "
                f"such as {path / 'api.sock'}"
            )
        if not stat.S_ISSOCK(info.st_mode):
            raise FileProblem(f"{path} exists and is not a socket; move it away or name another")
        return
    for parent in path.parents:
        try:
            info = os.stat(parent)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise FileProblem(f"{parent} cannot be reached ({exc.strerror})") from None
        if not stat.S_ISDIR(info.st_mode):
            raise FileProblem(f"{parent} is not a directory, so {path} cannot be made in it")
        return
