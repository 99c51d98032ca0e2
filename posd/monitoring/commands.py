"""Signed commands from the operations centre: `…/request/{command}` → `…/response/{command}`.

Every request is checked by protocols.command_payload exactly as mqtt.md says (shape, Ed25519
signature by a key of `mqtt.operator_keys`, 60 s clock window, ids of the last 10 minutes).
Answers:
- unsigned, badly signed, stale or future, replayed: `"error": "unauthorized"`;
- not a JSON request of the right shape, or delivered retained (a retained command would run
  again on every connect): `"error": "malformed request: …"`;
- a command posd does not know, or args it does not take: `unknown command: …`,
  `invalid args: …`.
Every refused request also raises a `security` event (what, detail; never the payload), at
most SECURITY_BURST at once and then one per SECURITY_EVERY_S, the rest counted in the next
one's `suppressed`; answers to refused requests are paced the same way (REFUSAL_BURST), so a
flood of garbage costs the broker little and the logs one line a minute.

A verified request runs as a task of its own (one at a time per command: a second one is
answered `busy`), within COMMAND_TIMEOUT_S, and is answered with its result or its error.
`reload_config` is answered the moment the daemon has taken or refused the new file, before
any component is replaced: the answer is in the link's outbox, which an orderly stop drains,
even when the reload rebuilds this very link.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from posd.mqtt import InboundMessage, Throttle, TokenBucket
from posd.payments import PaymentError
from posd.runtime import Decided, EventHub, ReloadOutcome
from protocols.command_payload import (
    COMMANDS,
    CommandRejected,
    ReplayWindow,
    VerifiedCommand,
    response_payload,
    verify_command,
)

log = logging.getLogger(__package__)

COMMAND_TIMEOUT_S: Final = 60.0
SECURITY_BURST: Final = 10
SECURITY_EVERY_S: Final = 6.0
REFUSAL_BURST: Final = 30
REFUSAL_EVERY_S: Final = 0.5
MAX_COMMAND_CHARS: Final = 64
_UNAUTHORIZED: Final = frozenset({"unsigned", "bad_signature", "clock_skew", "replayed"})
_WHAT: Final[Mapping[str, str]] = {
    "malformed": "malformed_command",
    "retained": "retained_command",
    "unknown_command": "unknown_command",
    "invalid_args": "invalid_command_args",
}

Publish = Callable[[str, bytes], None]


class CommandFailed(Exception):
    """A command that ran and could not do what it says: `ok: false` with this message."""


@dataclass(frozen=True)
class CommandHandlers:
    """What the commands do, given by the stack (each raises CommandFailed, or for saf_flush
    a posd.payments error, to answer `ok: false`). `chime` is the running order alerts'
    chime_test: `{"output": the output that played it, "failures": [the outputs tried before
    it, each with why it failed]}`. `request_reload` is absent from a stack run without the
    daemon."""

    saf_flush: Callable[[], Awaitable[Mapping[str, object]]]
    diagnostics: Callable[[], Awaitable[Mapping[str, object]]]
    set_log_level: Callable[[str], None]
    chime: Callable[[], Awaitable[Mapping[str, object]]]
    request_reload: Callable[[Decided | None], None] | None = None


class _Reply:
    def __init__(self, publish: Publish, topic: str, command_id: str | None) -> None:
        self._publish = publish
        self._topic = topic
        self._id = command_id
        self.sent = False

    def ok(self, result: object) -> None:
        self._send(response_payload(self._id, result=result))

    def fail(self, error: str) -> None:
        self._send(response_payload(self._id, error=error))

    def _send(self, payload: bytes) -> None:
        if not self.sent:
            self.sent = True
            self._publish(self._topic, payload)


class CommandDesk:
    """The link's handler for `…/request/+`; see the module doc."""

    def __init__(
        self,
        base_topic: str,
        operator_keys: Sequence[bytes],
        hub: EventHub,
        handlers: CommandHandlers,
        publish: Publish,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        replay: ReplayWindow | None = None,
    ) -> None:
        """`replay`: the ids seen in the last 10 minutes, shared with the desks before this
        one (a reload rebuilds the desk; a replay must still be refused)."""
        self.request_filter = f"{base_topic}/request/+"
        self._request_prefix = f"{base_topic}/request/"
        self._response_prefix = f"{base_topic}/response/"
        self._keys = tuple(operator_keys)
        self._hub = hub
        self._handlers = handlers
        self._publish = publish
        self._clock = clock
        self._replay = replay if replay is not None else ReplayWindow()
        self._security = TokenBucket(SECURITY_BURST, SECURITY_EVERY_S, monotonic)
        self._refusals = TokenBucket(REFUSAL_BURST, REFUSAL_EVERY_S, monotonic)
        self._log_lines = Throttle(60.0)
        self._monotonic = monotonic
        self._running: dict[str, asyncio.Task[None]] = {}
        self.refused = 0
        self.answers_held = 0

    async def on_message(self, message: InboundMessage) -> None:
        if not message.topic.startswith(self._request_prefix):
            return
        command = message.topic[len(self._request_prefix) :]
        topic = self._response_prefix + command
        now = int(self._clock())
        self._replay.prune(now)
        checked = verify_command(command, message.payload, self._keys, now, self._replay)
        if isinstance(checked, CommandRejected):
            reply = _Reply(self._publish, topic, checked.id)
            self._refuse(command, checked.reason, checked.detail, reply)
            return
        reply = _Reply(self._publish, topic, checked.id)
        if message.retain:
            self._refuse(command, "retained", "delivered retained", reply)
            return
        self._replay.add(checked.id, now)
        if command in self._running:
            reply.fail(f"busy: a {command} is still running")
            return
        log.info("command %s (%s) from operator key %d", command, checked.id, checked.key_index)
        task = asyncio.create_task(self._run(checked, reply), name=f"command {command}")
        self._running[command] = task
        task.add_done_callback(functools.partial(self._finished, command))

    def _finished(self, command: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(command, None)

    async def stop(self) -> None:
        """Cancel the commands still running (posd stops, or the link is rebuilt)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- refusing -------------------------------------------------------------------------

    def _refuse(self, command: str, reason: str, detail: str, reply: _Reply) -> None:
        self.refused += 1
        shown = _shown(command)
        if reason in _UNAUTHORIZED:
            error, what = "unauthorized", "unauthorized_command"
        elif reason == "unknown_command":
            error, what = f"unknown command: posd knows {', '.join(sorted(COMMANDS))}", reason
        elif reason == "invalid_args":
            error, what = f"invalid args: {detail}", _WHAT[reason]
        else:
            error, what = f"malformed request: {detail}", _WHAT[reason]
        if self._refusals.take():
            reply.fail(error)
        else:
            self.answers_held += 1
        allowed, held = self._log_lines.allow(self._monotonic())
        if allowed:
            more = f" ({held} more refused since the last such line)" if held else ""
            log.warning("command %s refused: %s: %s%s", shown, reason, detail, more)
        if self._security.take():
            body: dict[str, object] = {
                "what": what,
                "detail": f"{reason}: {detail}",
                "command": shown,
                "reason": reason,
            }
            if self._security.held:
                body["suppressed"], self._security.held = self._security.held, 0
            self._hub.publish("security", "security", body)

    # ---- running --------------------------------------------------------------------------

    async def _run(self, command: VerifiedCommand, reply: _Reply) -> None:
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                result = await self._execute(command, reply)
        except CommandFailed as exc:
            reply.fail(str(exc))
        except TimeoutError:
            reply.fail(f"{command.command} did not finish within {COMMAND_TIMEOUT_S:.0f} s")
        except Exception as exc:
            log.exception("command %s failed", command.command)
            reply.fail(f"{command.command} failed: {type(exc).__name__}")
        else:
            reply.ok(result)

    async def _execute(self, command: VerifiedCommand, reply: _Reply) -> object:
        h = self._handlers
        match command.command:
            case "chime_test":
                return await h.chime()
            case "saf_flush":
                try:
                    return await h.saf_flush()
                except PaymentError as exc:
                    raise CommandFailed(exc.message) from None
            case "reload_config":
                return await self._reload(reply)
            case "diagnostics":
                return await h.diagnostics()
            case "log_level":
                level = str(command.args["level"])
                h.set_log_level(level)
                log.warning("log level set to %s by an operator command, until restart", level)
                return {"level": level, "until": "restart"}
        raise CommandFailed(f"unknown command: posd knows {', '.join(sorted(COMMANDS))}")

    async def _reload(self, reply: _Reply) -> object:
        request = self._handlers.request_reload
        if request is None:
            raise CommandFailed("reload_config is not available: posd runs without its daemon")
        decided: asyncio.Future[ReloadOutcome] = asyncio.get_running_loop().create_future()

        def answer(outcome: ReloadOutcome) -> None:
            # Answered here, synchronously: the daemon may replace this component next.
            if outcome.applied:
                reply.ok({"result": "reloaded", "config_sha256": outcome.config_sha256})
            else:
                problems = "; ".join(outcome.problems) or "see the log"
                reply.fail(f"config refused, the running one kept: {problems}"[:2000])
            if not decided.done():
                decided.set_result(outcome)

        request(answer)
        await decided
        return None  # answered in answer()


def _shown(command: str) -> str:
    """A command name from a topic, as a log line or an event may show it."""
    text = "".join(ch if ch.isprintable() else "?" for ch in command)
    return text if len(text) <= MAX_COMMAND_CHARS else text[: MAX_COMMAND_CHARS - 1] + "…"
