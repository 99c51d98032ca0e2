"""`posd admin`: the operations centre's tools for signed commands (mqtt.md), without code.

    posd admin keygen [--out operator.key]
    posd admin sign COMMAND [--args JSON] --key FILE
    posd admin send TERMINAL COMMAND [--args JSON] --key FILE --broker HOST[:PORT]
        [--base-topic posd] [--tls-ca F [--tls-cert F --tls-key F]]
        [--username U --password-file F] [--timeout S]

`keygen` writes an Ed25519 private key (unencrypted PKCS #8 PEM, mode 0600, never over an
existing file) and FILE.pub, and prints the public half for `mqtt.operator_keys`. `sign`
prints the request envelope. `send` signs, publishes on `{base}/{terminal}/request/{command}`,
waits for the answer on `…/response/{command}` with the request's id and prints it.

Exit codes: 0 done (for send: the box answered ok), 1 the box answered `ok: false`, 64 a bad
command line (unknown command, args that are not a JSON object), 69 the broker could not be
reached, 73 keygen would overwrite a file, 75 no answer in time, 78 an unusable key or
password file.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from posd.logs import register_secret

if TYPE_CHECKING:
    from posd.fleet import Operator
    from posd.mqtt import LinkSettings

DEFAULT_KEY_FILE: Final = Path("operator.key")
DEFAULT_TIMEOUT_S: Final = 15.0
EX_REFUSED: Final = 1


def _broker(text: str) -> tuple[str, int | None]:
    from posd.fleet import broker_address  # the console's own parsing, loaded when used

    return broker_address(text)


def _base_topic(text: str) -> str:
    from posd.fleet import base_topic

    return base_topic(text)


def add_arguments(
    parser: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]
) -> None:
    sub = parser.add_subparsers(dest="admin_command", metavar="ACTION", parser_class=parser_class)
    keygen = sub.add_parser("keygen", help="make an operator key pair (the private half 0600)")
    keygen.add_argument(
        "--out", type=Path, default=DEFAULT_KEY_FILE, metavar="FILE",
        help=f"where the private key goes (default {DEFAULT_KEY_FILE}; FILE.pub the public)",
    )  # fmt: skip
    sign = sub.add_parser("sign", help="print the signed envelope of a command")
    _command_arguments(sign)
    send = sub.add_parser("send", help="sign, publish, wait for the box's answer and print it")
    send.add_argument("terminal", metavar="TERMINAL", help="the box's terminal.id")
    _command_arguments(send)
    send.add_argument("--broker", required=True, type=_broker, metavar="HOST[:PORT]")
    send.add_argument("--base-topic", default="posd", type=_base_topic, help="mqtt.base_topic")
    send.add_argument("--tls-ca", type=Path, metavar="F", help="CA of the broker: TLS on")
    send.add_argument("--tls-cert", type=Path, metavar="F", help="client certificate (PEM)")
    send.add_argument("--tls-key", type=Path, metavar="F", help="its private key (PEM)")
    send.add_argument("--username", metavar="U")
    send.add_argument("--password-file", type=Path, metavar="F")
    send.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
        help=f"seconds to wait for the answer (default {DEFAULT_TIMEOUT_S:.0f})",
    )  # fmt: skip


def _command_arguments(parser: argparse.ArgumentParser) -> None:
    # Not `command`: that is the name of the posd command itself (`admin`).
    parser.add_argument("name", metavar="COMMAND", help="chime_test, saf_flush, ...")
    parser.add_argument(
        "--args", default="{}", metavar="JSON", help='the args object, e.g. {"level": "debug"}'
    )
    parser.add_argument("--key", required=True, type=Path, metavar="FILE", help="operator key")


def _err(message: str) -> None:
    print(f"posd admin: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from posd.fleet import CommandError

    if args.admin_command == "keygen":
        return keygen(args.out)
    if args.admin_command in ("sign", "send"):
        prepared = _prepare(args)
        if isinstance(prepared, int):
            return prepared
        operator, command_args = prepared
        if args.admin_command == "sign":
            try:
                _, payload = operator.request(args.name, command_args, int(time.time()))
            except CommandError as exc:
                _err(exc.message)
                return os.EX_USAGE
            print(payload.decode())
            return os.EX_OK
        return send(args, operator, command_args)
    _err("say keygen, sign or send; see `posd admin --help`")
    return os.EX_USAGE


def keygen(out: Path) -> int:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = base64.b64encode(
        key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()
    pub_file = out.with_name(out.name + ".pub")
    for path in (out, pub_file):
        if path.exists() or path.is_symlink():
            _err(f"{path} exists; keygen never overwrites a key: choose another --out")
            return os.EX_CANTCREAT
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        pub_file.write_text(public + "\n")
    except OSError as exc:
        _err(f"cannot write {out}: {exc.strerror or exc}")
        return os.EX_CANTCREAT
    print(f"private key: {out} (mode 0600; keep it on the operations centre's side)")
    print(f"public key:  {pub_file}")
    print(f'put on each box, [mqtt] section: operator_keys = ["{public}"]')
    return os.EX_OK


def _prepare(args: argparse.Namespace) -> tuple[Operator, dict[str, object]] | int:
    from posd.fleet import Operator, SecretFileError, load_operator_key

    try:
        command_args = json.loads(args.args)
    except ValueError:
        _err(f"--args is not JSON: {args.args!r}; expected an object such as {{}}")
        return os.EX_USAGE
    if not isinstance(command_args, dict):
        _err('--args must be a JSON object, such as {} or {"level": "debug"}')
        return os.EX_USAGE
    try:
        key = load_operator_key(args.key)
    except SecretFileError as exc:
        _err(str(exc))
        return os.EX_CONFIG
    return Operator(key), command_args


def send(args: argparse.Namespace, operator: Operator, command_args: dict[str, object]) -> int:
    from posd.fleet import CommandError, SecretFileError, read_password
    from posd.mqtt import LinkSettings

    try:
        operator.request(args.name, command_args, int(time.time()))  # refused here first
    except CommandError as exc:
        _err(exc.message)
        return os.EX_USAGE
    password = None
    if args.password_file is not None:
        try:
            password = read_password(args.password_file)
        except SecretFileError as exc:
            _err(str(exc))
            return os.EX_CONFIG
        register_secret(password)
    host, port = args.broker
    tls = args.tls_ca is not None
    try:
        settings = LinkSettings(
            name="admin",
            host=host,
            port=port or (8883 if tls else 1883),
            client_id=f"posd-admin-{uuid.uuid4().hex[:12]}",
            tls=tls,
            ca_file=args.tls_ca,
            cert_file=args.tls_cert,
            key_file=args.tls_key,
            username=args.username,
            password=password,
            backoff_initial_s=0.2,
            backoff_max_s=2.0,
            timeout_s=max(1.0, min(10.0, args.timeout)),
        )
    except ValueError as exc:
        _err(str(exc))
        return os.EX_USAGE
    return asyncio.run(_exchange(settings, args, operator, command_args))


async def _exchange(
    settings: LinkSettings,
    args: argparse.Namespace,
    operator: Operator,
    command_args: dict[str, object],
) -> int:
    from posd.fleet import CommandError, check_response
    from posd.mqtt import InboundMessage, LinkDown, MaybeSent, MqttLink, Subscription

    box = f"{args.base_topic}/{args.terminal}"
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_answer(message: InboundMessage) -> None:
        answers.put_nowait(message.payload)

    link = MqttLink(
        settings,
        subscriptions=[Subscription(f"{box}/response/{args.name}")],
        handler=on_answer,
    )
    task = asyncio.create_task(link.run())
    try:
        async with asyncio.timeout(args.timeout):
            await link.wait_up()
            command_id, payload = operator.request(args.name, command_args, int(time.time()))
            try:
                await link.send(f"{box}/request/{args.name}", payload, qos=1)
            except (LinkDown, MaybeSent) as exc:
                _err(f"the request may not have reached the broker: {exc}")
                return os.EX_UNAVAILABLE
            while True:
                try:
                    answer = check_response(command_id, await answers.get())
                except CommandError:
                    continue  # another request's answer, or not an answer at all
                break
    except TimeoutError:
        if link.state.connects == 0:
            _err(f"cannot reach the broker: {link.state.last_error or 'no answer'}")
            return os.EX_UNAVAILABLE
        _err(f"no answer from {args.terminal} within {args.timeout:g} s (is it online?)")
        return os.EX_TEMPFAIL
    finally:
        link.stop()
        await task
    print(json.dumps(answer, ensure_ascii=False, indent=2))
    if answer["ok"] is not True:
        _err(f"{args.terminal} answered: {answer['error']}")
        return EX_REFUSED
    return os.EX_OK
