"""posd.config: the files a config names and the config file itself: secret files' shape,
modes and content never shown, a secret pasted for a path, plain TCP only on loopback."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from posd.config import (
    Config,
    ConfigError,
    ConfigFileError,
    load_config,
    parse_config,
    read_api_token,
    read_mac_key,
)
from tests.helpers.configs import (
    API_TOKEN,
    MAC_KEY_HEX,
    key_line,
    problems,
    public_key_b64,
    write_config,
    write_secret,
    write_tls_files,
)
from tests.helpers.unprivileged import run_python

OTHER_KEY = public_key_b64(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


# --- secret files: shape checked, content never shown ---

SECRET = "5ec2e7" * 12  # distinctive hex that must never appear in a message


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (SECRET[:63], "holds 63 characters, expected exactly 64 hexadecimal characters"),
        (SECRET[:63] + "g", "holds a character that is not hexadecimal"),
        (SECRET[:64] + "\n\n", "holds 65 characters"),
        ((SECRET[:62] + "ü").encode(), "holds a character that is not hexadecimal"),
        ("", "holds 0 characters"),
    ],
)
def test_bad_mac_key_file_is_described_without_its_content(
    tmp_path: Path, content: str | bytes, fragment: str
) -> None:
    mac = tmp_path / "bad.key"
    write_secret(mac, content)
    path = write_config(tmp_path, ledger={"mac_key_file": str(mac)})
    [(_, key_path, message)] = problems(path)
    assert key_path == "ledger.mac_key_file" and fragment in message
    assert SECRET[:12] not in message


@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_mac_key_file_may_end_with_one_newline(tmp_path: Path, ending: str) -> None:
    mac = tmp_path / "ok.key"
    write_secret(mac, SECRET[:64].upper() + ending)
    config = load_config(write_config(tmp_path, ledger={"mac_key_file": str(mac)}))
    assert read_mac_key(config) == bytes.fromhex(SECRET[:64])


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "is empty"),
        (b"\n", "is empty"),
        (b"short-5ec2e7\n", "holds a token of 12 characters"),
        (b"5ec2e75ec2e7 5ec2e75ec2e7", "holds spaces or control characters"),
        ("5ec2e75ec2e7é5ec2e7".encode(), "non-ASCII"),
    ],
)
def test_bad_api_token_file_is_described_without_its_content(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    token = tmp_path / "bad.token"
    write_secret(token, content)
    path = write_config(tmp_path, api={"token_file": str(token)})
    [(_, key_path, message)] = problems(path)
    assert key_path == "api.token_file" and fragment in message
    assert "5ec2e7" not in message


def test_bad_password_file(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    for content, fragment in [(b"", "is empty"), (b"\xff5ec2e7", "is not UTF-8")]:
        write_secret(password, content)
        path = write_config(
            tmp_path, mqtt={"enabled": True, "username": "u", "password_file": str(password)}
        )
        [(_, _, message)] = problems(path)
        assert fragment in message and "5ec2e7" not in message


def test_key_material_in_the_config_is_never_echoed(tmp_path: Path) -> None:
    pasted = base64.b64encode(b"5ec2e7 private seed").decode()
    path = write_config(
        tmp_path, qr={"platform_keys": {"1": pasted}}, mqtt={"operator_keys": [pasted]}
    )
    found = problems(path)
    assert len(found) == 2
    assert all(pasted not in message for _, _, message in found)


def test_full_card_number_in_prefixes_is_not_echoed(tmp_path: Path) -> None:
    pan = "9410123456789012"
    path = write_config(tmp_path, card_reader={"accepted_prefixes": [pan]})
    [(_, _, message)] = problems(path)
    assert pan not in message and "1 to 11 digits" in message


def test_secret_readers_fail_cleanly_when_the_file_changed(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    (tmp_path / "mac.key").write_text(SECRET[:40])
    with pytest.raises(ConfigFileError) as caught:
        read_mac_key(config)
    assert "ledger.mac_key_file" in str(caught.value) and "holds 40 characters" in str(caught.value)
    assert SECRET[:12] not in str(caught.value)
    (tmp_path / "api.token").unlink()
    with pytest.raises(ConfigFileError, match=r"api\.token_file: .*does not exist"):
        read_api_token(config)


def test_nothing_secret_in_the_repr(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, api={"tcp_port": 8787}))
    text = repr(config)
    assert MAC_KEY_HEX not in text and API_TOKEN not in text


def test_secret_file_that_is_a_directory_or_not_a_regular_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, ledger={"mac_key_file": str(tmp_path)})
    [(_, _, message)] = problems(path)
    assert "is a directory, expected a file" in message
    path = write_config(tmp_path, ledger={"mac_key_file": "/dev/null"})
    [(_, _, message)] = problems(path)
    assert "is not a regular file" in message


def test_unreadable_secret_file(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    (tmp_path / "api.token").chmod(0)
    # In a child without root's override of file modes: CI runs the suite as root.
    checked = run_python("-m", "posd", "config", "check", str(path))
    assert checked.returncode == os.EX_CONFIG, checked
    line = key_line(path, "api", "token_file")
    first, *_, last = checked.stderr.splitlines()
    assert first.startswith(
        f"{path}:{line}: api.token_file: {tmp_path / 'api.token'} is not readable by this process"
    ), checked
    assert last.startswith(f"1 problem in {path}"), checked


# --- the file itself ---


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as caught:
        load_config(tmp_path / "absent.toml")
    assert str(caught.value) == (
        f"{tmp_path / 'absent.toml'}: config file not found; create one with "
        "`posd config example > FILE` and edit it, or name another file with -c FILE or POSD_CONFIG"
    )


def test_config_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="is a directory, expected the config file"):
        load_config(tmp_path)


def test_unreadable_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.chmod(0)
    checked = run_python("-m", "posd", "config", "check", str(path))
    assert checked.returncode == os.EX_NOINPUT, checked
    assert f"{path}: config file not readable by this process" in checked.stderr, checked


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ('[terminal]\nid = "T0000001"\nmerchant_id = = 1\n', 3, "Invalid value (column 15)"),
        ("[terminal]\nid = 1\nid = 2\n", 3, "Cannot overwrite a value"),
        ('[terminal]\nid = "T0000001\n', 2, "Illegal character"),
        ("[ledger]\naccepted = [1,\n", 2, "(at end of file)"),
        ("[a]\n[a]\n", 2, "Cannot declare"),
    ],
)
def test_syntax_error_is_one_problem_with_its_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("bad.toml"))
    [problem] = caught.value.problems
    assert problem.line == line
    assert str(problem).startswith(f"bad.toml:{line}: syntax error: ")
    assert fragment in problem.message and problem.message.endswith("expected valid TOML")


def test_non_utf8_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[terminal]\nid = "T000000\xe9"\n')
    [(line, _, message)] = problems(path)
    assert line == 2 and "not UTF-8 text" in message


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    data = b"\xef\xbb\xbf" + path.read_bytes()
    path.write_bytes(data)
    assert load_config(path).sha256 == hashlib.sha256(data).hexdigest()


def test_relative_paths_are_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_config(tmp_path, ledger={"mac_key_file": "mac.key"})
    assert load_config(path).ledger.mac_key_file == Path("mac.key")
    monkeypatch.chdir("/")
    assert [k for _, k, _ in problems(path)] == ["ledger.mac_key_file"]


def test_config_type_has_every_section() -> None:
    names = [f.name for f in dataclasses.fields(Config)]
    assert names == [
        "terminal", "card_reader", "qr_scanner", "qr", "ledger", "offline", "mqtt", "orders",
        "audio", "api", "storage", "logging", "source", "sha256",
    ]  # fmt: skip


# --- plain TCP to the ledger only on this machine ---


@pytest.mark.parametrize(
    "host",
    [
        "ledger.seoroeum.example",
        "192.0.2.10",
        "2001:db8::1",
        "::ffff:192.0.2.10",
        "localhost.example",
        "128.0.0.1",
    ],
)
def test_plain_tcp_ledger_off_this_machine_is_refused(tmp_path: Path, host: str) -> None:
    path = write_config(tmp_path, ledger={"host": host, "tls": False})
    [(line, key_path, message)] = problems(path)
    assert key_path == "ledger.tls" and line == key_line(path, "ledger", "tls")
    assert f"host {host} is not this machine" in message and "in clear" in message
    assert "expected tls = true" in message


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LocalHost.", "::ffff:127.0.0.1"]
)
def test_plain_tcp_ledger_on_loopback_is_accepted(tmp_path: Path, host: str) -> None:
    config = load_config(write_config(tmp_path, ledger={"host": host, "tls": False}))
    assert config.ledger.tls is False and config.ledger.host == host


def test_remote_ledger_with_tls_is_accepted(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, ledger={"host": "192.0.2.10", "tls": True}))
    assert config.ledger.tls is True


def test_mqtt_without_tls_to_a_remote_broker_is_accepted(tmp_path: Path) -> None:
    # MQTT carries no card data (mqtt.md); only the ledger link is held to TLS off this machine.
    config = load_config(write_config(tmp_path, mqtt={"enabled": True, "host": "192.0.2.20"}))
    assert config.mqtt.tls is False


# --- a secret pasted where a file path belongs is refused without being echoed ---

PASTED_HEX = "9f" * 32
PASTED_TOKEN = "c2VjcmV0LWFwaS10b2tlbi1wYXN0ZWQtaW4tcGxhY2U="
PASTED_PASSWORD = "hunter2-broker-password"
PASTED_PEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"


@pytest.mark.parametrize(
    ("section", "key", "value", "extra"),
    [
        ("ledger", "mac_key_file", PASTED_HEX, {}),
        ("api", "token_file", PASTED_TOKEN, {}),
        ("mqtt", "password_file", PASTED_PASSWORD, {"enabled": True, "username": "posd"}),
        ("ledger", "key_file", PASTED_PEM, {"tls": True}),
        ("mqtt", "key_file", PASTED_PEM, {"enabled": True, "tls": True, "cert_file": "/x.pem"}),
    ],
)
def test_secret_pasted_into_a_file_key_is_refused_unechoed(
    tmp_path: Path, section: str, key: str, value: str, extra: dict[str, object]
) -> None:
    path = write_config(tmp_path, **{section: {**extra, key: value}})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    found = {p.key_path: p.message for p in caught.value.problems}
    assert "did you paste the secret itself?" in found[f"{section}.{key}"]
    shown = str(caught.value)
    for fragment in (value, value[:12], value.strip().splitlines()[-1][:12]):
        assert fragment not in shown


def test_a_secret_looking_name_of_an_existing_file_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_secret(tmp_path / "c2VjcmV0bmFtZWRmaWxl", MAC_KEY_HEX + "\n")
    config = load_config(write_config(tmp_path, ledger={"mac_key_file": "c2VjcmV0bmFtZWRmaWxl"}))
    assert read_mac_key(config) == bytes.fromhex(MAC_KEY_HEX)


def test_a_missing_file_with_a_plain_name_is_still_named(tmp_path: Path) -> None:
    missing = tmp_path / "absent" / "mac.key"
    [(_, key_path, message)] = problems(write_config(tmp_path, ledger={"mac_key_file": missing}))
    assert key_path == "ledger.mac_key_file" and f"{missing} does not exist" in message


# --- secret files others can open are refused; the group may read them ---


def _config_naming_secret(tmp_path: Path, key_path: str) -> tuple[Path, Path]:
    """A valid config whose `key_path` names a secret file, and that file (to chmod)."""
    tls = write_tls_files(tmp_path / "tls")
    password = write_secret(tmp_path / "mqtt.password", "a-broker-password\n")
    pair = {
        "tls": True,
        "ca_file": str(tls.ca_file),
        "cert_file": str(tls.client_cert_file),
        "key_file": str(tls.client_key_file),
    }
    if key_path == "ledger.mac_key_file":
        return write_config(tmp_path), tmp_path / "mac.key"
    if key_path == "api.token_file":
        return write_config(tmp_path), tmp_path / "api.token"
    if key_path == "mqtt.password_file":
        mqtt = {"enabled": True, "username": "posd", "password_file": str(password)}
        return write_config(tmp_path, mqtt=mqtt), password
    if key_path == "ledger.key_file":
        return write_config(tmp_path, ledger=pair), tls.client_key_file
    assert key_path == "mqtt.key_file"
    return write_config(tmp_path, mqtt={"enabled": True, **pair}), tls.client_key_file


SECRET_KEYS = [
    "ledger.mac_key_file",
    "api.token_file",
    "mqtt.password_file",
    "ledger.key_file",
    "mqtt.key_file",
]


@pytest.mark.parametrize("key_path", SECRET_KEYS)
@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602, 0o601, 0o666])
def test_secret_file_open_to_others_is_refused(tmp_path: Path, key_path: str, mode: int) -> None:
    config_path, secret = _config_naming_secret(tmp_path, key_path)
    secret.chmod(mode)
    found = {k: m for _, k, m in problems(config_path)}
    assert found.keys() == {key_path}
    assert f"open to other users (mode {mode:04o})" in found[key_path]
    assert f"run `chmod 640 {secret}`" in found[key_path]


@pytest.mark.parametrize("key_path", SECRET_KEYS)
@pytest.mark.parametrize("mode", [0o640, 0o600, 0o400])
def test_secret_file_readable_by_owner_and_group_is_accepted(
    tmp_path: Path, key_path: str, mode: int
) -> None:
    config_path, secret = _config_naming_secret(tmp_path, key_path)
    secret.chmod(mode)
    load_config(config_path)


def test_public_files_may_be_world_readable(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path / "tls")
    tls.ca_file.chmod(0o644)
    tls.client_cert_file.chmod(0o644)
    load_config(
        write_config(
            tmp_path,
            ledger={
                "tls": True,
                "ca_file": str(tls.ca_file),
                "cert_file": str(tls.client_cert_file),
                "key_file": str(tls.client_key_file),
            },
        )
    )


def test_a_wrong_file_as_key_file_is_named_for_its_content_not_its_mode(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path / "tls")
    tls.ca_file.chmod(0o644)
    ledger = {
        "tls": True,
        "ca_file": str(tls.ca_file),
        "cert_file": str(tls.client_cert_file),
        "key_file": str(tls.ca_file),
    }
    [(_, key_path, message)] = problems(write_config(tmp_path, ledger=ledger))
    assert key_path == "ledger.key_file" and "holds no PEM private key" in message


def test_secret_readers_refuse_a_file_opened_to_others_after_the_check(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    (tmp_path / "mac.key").chmod(0o644)
    (tmp_path / "api.token").chmod(0o604)
    with pytest.raises(ConfigFileError, match=r"ledger\.mac_key_file: .*chmod 640"):
        read_mac_key(config)
    with pytest.raises(ConfigFileError, match=r"api\.token_file: .*chmod 640"):
        read_api_token(config)


def test_tls_keys_the_test_helpers_write_pass_the_mode_check(tmp_path: Path) -> None:
    load_config(write_config(tmp_path, ledger={"tls": True}, mqtt={"enabled": True, "tls": True}))
    for key in (tmp_path / "tls").glob("*.key"):
        assert key.stat().st_mode & 0o007 == 0


@pytest.mark.parametrize("value", [123456789012345678, 12.5e9, ["hunter2-broker-password"]])
def test_a_file_key_of_another_type_is_refused_without_its_value(
    tmp_path: Path, value: object
) -> None:
    path = write_config(tmp_path, ledger={"mac_key_file": value})
    [(_, key_path, message)] = problems(path)
    assert key_path == "ledger.mac_key_file"
    assert "(not shown here), expected a string holding a file path" in message
    assert "1234" not in message and "125" not in message and "hunter2" not in message
