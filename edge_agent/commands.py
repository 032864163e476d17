"""The kiosk's side of remote commands (contract/commands.py): check, run off the check-in path, reply signed.

A command is run only if central's key signed it, it names this kiosk, it has not expired by
this kiosk's clock and its id was not run before (the last ``REMEMBERED`` ids are kept; a command
lives at most an hour, so a replay older than that is refused as expired when the clock is right).
Anything else is refused and kept in ``refused`` (bounded) and logged, and the uplink counts it.

Commands run one at a time on a thread of their own with a short queue: the check-in flow and
paho's network thread never wait for one. A full queue answers "busy".

``LogRing`` is where "logs" reads from: a bounded in-memory handler on the root logger, so the
agent keeps its recent log without writing to the SD card and without any file to rotate.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from nacl.signing import SigningKey, VerifyKey

from contract.commands import (
    MAX_LINE,
    CheckItem,
    Command,
    CommandReply,
    CommandResult,
    ResendResult,
    fit_lines,
    iso,
    parse_command,
    sign_reply,
)
from contract.errors import ContractError

log = logging.getLogger("edge_agent.commands")

RING_LINES = 1000  # more than the 500 a command may ask for
REMEMBERED = 512  # command ids already run
REFUSED_KEPT = 50
QUEUE = 4


class LogRing(logging.Handler):
    """The newest ``RING_LINES`` formatted log lines, each cut to the contract's line limit."""

    def __init__(self, size: int = RING_LINES, level: int = logging.INFO):
        super().__init__(level)
        self.lines: collections.deque[str] = collections.deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record)[:MAX_LINE])
        except Exception:  # a log line must never raise into the code that logged it
            self.handleError(record)

    def last(self, n: int) -> list[str]:
        return list(self.lines)[-n:]

    def install(self) -> LogRing:
        logging.getLogger().addHandler(self)
        return self

    def remove(self) -> None:
        logging.getLogger().removeHandler(self)


class CommandHandler:
    def __init__(self, *, device_id: str, central_key: VerifyKey, signing_key: SigningKey,
                 send_reply: Callable[[bytes], None], selftest: Callable[[], list[CheckItem]],
                 resend: Callable[[int], ResendResult], logs: LogRing, now: Callable[[], datetime] | None = None):
        self.device_id, self._central_key, self._key = device_id, central_key, signing_key
        self._send_reply, self._selftest, self._resend, self._logs = send_reply, selftest, resend, logs
        self._now = now or (lambda: datetime.now(UTC))
        self._done: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.refused: collections.deque[tuple[str, str]] = collections.deque(maxlen=REFUSED_KEPT)  # (time, why)
        self.replied: collections.deque[CommandReply] = collections.deque(maxlen=REFUSED_KEPT)
        self._jobs: queue.Queue[Command | None] = queue.Queue(maxsize=QUEUE)
        self._thread = threading.Thread(target=self._run, name="kiosk-commands", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        try:
            self._jobs.put_nowait(None)
        except queue.Full:
            pass
        if self._thread.is_alive():
            self._thread.join(5)

    # paho's network thread ------------------------------------------------------------

    def receive(self, payload: bytes) -> None:
        """Check one command and queue it; ContractError (after keeping the reason) when it is refused."""
        try:
            command = parse_command(self._central_key, payload)  # size, then central's signature, then shape
            if command.device != self.device_id:
                raise ContractError(f"command {command.id} is for device {command.device}, not this one")
            with self._lock:
                if command.id in self._done:
                    raise ContractError(f"command {command.id} was already run (a replay)")
                self._done[command.id] = None
                while len(self._done) > REMEMBERED:
                    self._done.popitem(last=False)
        except ContractError as exc:
            self._refuse(f"refused command: {exc}")
            raise
        if command.expired(self._now()):
            self._refuse(f"refused command {command.id}: expired at {command.expires_at}")
            self._reply(command, False, CommandResult(error=f"expired at {command.expires_at} by the kiosk's clock"))
            return
        try:
            self._jobs.put_nowait(command)
        except queue.Full:
            self._refuse(f"refused command {command.id}: {QUEUE} commands already waiting")
            self._reply(command, False, CommandResult(error="busy: other commands are still running"))

    def _refuse(self, reason: str) -> None:
        self.refused.append((iso(self._now()), reason[:MAX_LINE]))
        log.warning("%s", reason)

    # the command thread ------------------------------------------------------------------

    def _run(self) -> None:
        while (command := self._jobs.get()) is not None:
            try:
                log.info("running command %s (%s) from central", command.id, command.kind)
                ok, result = self._execute(command)
            except Exception as exc:  # the reply says what went wrong; the kiosk goes on
                log.exception("command %s failed", command.id)
                ok, result = False, CommandResult(error=f"{type(exc).__name__}: {exc}"[:MAX_LINE])
            try:
                self._reply(command, ok, result)
            except Exception:
                log.exception("could not reply to command %s", command.id)

    def _execute(self, command: Command) -> tuple[bool, CommandResult]:
        if command.kind == "selftest":
            checks = self._selftest()
            return all(c.status != "fail" for c in checks), CommandResult(checks=checks)
        if command.kind == "logs":
            return True, CommandResult(lines=fit_lines(self._logs.last(command.args.lines or 0)))
        return True, CommandResult(resend=self._resend(command.args.from_seq or 0))

    def _reply(self, command: Command, ok: bool, result: CommandResult) -> None:
        reply = CommandReply(id=command.id, device=self.device_id, kind=command.kind, ok=ok, result=result,
                             at=iso(self._now()))
        self._send_reply(sign_reply(self._key, reply))
        self.replied.append(reply)
