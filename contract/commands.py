"""Remote actions: a command from central to one kiosk, and the kiosk's signed reply.

A ``Command`` is signed by central's key (like acks and bundles); a kiosk runs it only if the
signature verifies, it names this kiosk, it has not expired by the kiosk's clock, and its id
has not been run before. The kiosk answers with a ``CommandReply`` signed by its own device
key, on its own reply topic; central matches the reply to the command it stored by ``id``.

Kinds and their bounded arguments:
- ``selftest``: no arguments; the reply carries a checklist (``checks``).
- ``logs``: ``lines`` (1..500), the newest lines of the agent's own log (``lines`` in the reply).
- ``resend``: ``from_seq`` (>= 0), send again every record the kiosk still holds from that seq on.

Both travel QoS 1, not retained: a command is interactive (staff wait for its answer) and
short-lived (``expires_at``), so a kiosk offline when it is sent misses it and central shows
"no reply"; a retained command would hold only the last one per kiosk and be delivered again
at every reconnect, long after staff stopped waiting.

Sizes are checked before anything is parsed (``parse_command``, ``parse_reply``).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from nacl.signing import SigningKey, VerifyKey
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from .canonical import canonical_bytes
from .errors import ContractError
from .keys import device_id_from_public_key, sign_object, verify_object
from .wire import first_error, json_object

COMMAND_VERSION = 1
MAX_COMMAND_BYTES = 2048  # a command is about 400 bytes
MAX_RESULT_BYTES = 64 * 1024  # the reply's result, as canonical JSON
MAX_REPLY_BYTES = MAX_RESULT_BYTES + 2048  # the result plus the envelope; refused unread beyond
MAX_LOG_LINES = 500
MAX_LINE = 300  # a log line is cut to this many characters
MAX_CHECKS = 32
MAX_LIFETIME_S = 3600  # a command valid longer than this is refused: the kiosk's replay memory covers it
DEFAULT_LIFETIME_S = 120

CommandKind = Literal["selftest", "logs", "resend"]
ShortText = Annotated[str, StringConstraints(max_length=64)]
Line = Annotated[str, StringConstraints(max_length=MAX_LINE)]


def _time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"time without a zone: {text!r}")
    return parsed


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommandArgs(_Msg):
    lines: int | None = Field(None, ge=1, le=MAX_LOG_LINES, description="logs: how many of the newest lines")
    from_seq: int | None = Field(None, ge=0, le=2**53 - 1, description="resend: the first record seq to send again")


class Command(_Msg):
    v: Literal[1] = COMMAND_VERSION
    id: str = Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    device: str = Field(min_length=1, max_length=64)
    kind: CommandKind
    args: CommandArgs = CommandArgs()
    issued_at: ShortText
    expires_at: ShortText

    @model_validator(mode="after")
    def _check(self) -> Command:
        if self.kind == "logs" and self.args.lines is None:
            raise ValueError("a logs command needs args.lines")
        if self.kind == "resend" and self.args.from_seq is None:
            raise ValueError("a resend command needs args.from_seq")
        if self.kind == "selftest" and (self.args.lines is not None or self.args.from_seq is not None):
            raise ValueError("a selftest command takes no arguments")
        if self.kind == "logs" and self.args.from_seq is not None or self.kind == "resend" and self.args.lines is not None:
            raise ValueError(f"an argument that a {self.kind} command does not take")
        issued, expires = _time(self.issued_at), _time(self.expires_at)
        if not issued < expires <= issued + timedelta(seconds=MAX_LIFETIME_S):
            raise ValueError(f"expires_at must be after issued_at and within {MAX_LIFETIME_S} s of it")
        return self

    def expired(self, now: datetime) -> bool:
        return now >= _time(self.expires_at)

    def issued(self) -> datetime:
        return _time(self.issued_at)


def new_command(device: str, kind: str, *, lines: int | None = None, from_seq: int | None = None,
                now: datetime | None = None, lifetime_s: float = DEFAULT_LIFETIME_S) -> Command:
    """A fresh command (random id); ContractError when the arguments do not fit the kind."""
    moment = now or datetime.now(UTC)
    try:
        return Command(id=str(uuid.uuid4()), device=device, kind=kind,  # type: ignore[arg-type]
                       args=CommandArgs(lines=lines, from_seq=from_seq), issued_at=iso(moment),
                       expires_at=iso(moment + timedelta(seconds=lifetime_s)))
    except ValidationError as exc:
        raise ContractError(f"command does not match the contract: {first_error(exc)}") from exc


def encode_command(key: SigningKey, command: Command) -> bytes:
    return canonical_bytes(sign_object(key, command.model_dump(mode="json", exclude_none=True)))


def parse_command(central_key: VerifyKey, payload: bytes) -> Command:
    """Size first, then central's signature, then shape; ContractError (SignatureError for a forgery) otherwise."""
    body = verify_object(central_key, json_object(payload, limit=MAX_COMMAND_BYTES, what="command", version=COMMAND_VERSION))
    try:
        return Command.model_validate(body)
    except ValidationError as exc:
        raise ContractError(f"command does not match the contract: {first_error(exc)}") from exc


class CheckItem(_Msg):
    """One line of the kiosk's remote self-test."""

    name: ShortText
    status: Literal["ok", "warn", "fail", "skip"]
    detail: Line = ""


class ResendResult(_Msg):
    from_seq: int = Field(ge=0)
    acked_seq: int = Field(ge=0, description="central's last ack: records up to it are no longer on the kiosk")
    head_seq: int = Field(ge=0, description="the kiosk's newest record")
    resent: int = Field(ge=0, description="records queued to be sent again")
    first: int | None = Field(None, ge=1)
    last: int | None = Field(None, ge=1)


class CommandResult(_Msg):
    checks: list[CheckItem] | None = Field(None, max_length=MAX_CHECKS)
    lines: list[Line] | None = Field(None, max_length=MAX_LOG_LINES)
    resend: ResendResult | None = None
    error: Line | None = Field(None, description="why the command was not run (expired, busy, failed)")

    @model_validator(mode="after")
    def _bounded(self) -> CommandResult:
        size = len(canonical_bytes(self.model_dump(mode="json", exclude_none=True)))
        if size > MAX_RESULT_BYTES:
            raise ValueError(f"result is {size} bytes, limit {MAX_RESULT_BYTES}")
        return self


class CommandReply(_Msg):
    v: Literal[1] = COMMAND_VERSION
    id: str = Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    device: str = Field(min_length=1, max_length=64)
    kind: CommandKind
    ok: bool
    result: CommandResult = CommandResult()
    at: ShortText


def sign_reply(key: SigningKey, reply: CommandReply) -> bytes:
    expected = device_id_from_public_key(key.verify_key)
    if reply.device != expected:
        raise ContractError(f"reply claims device {reply.device}, key is {expected}")
    return canonical_bytes(sign_object(key, reply.model_dump(mode="json", exclude_none=True)))


def parse_reply(payload: bytes) -> tuple[CommandReply, dict[str, Any]]:
    """Shape only, size first: (reply, the signed object) for ``verify_reply``."""
    data = json_object(payload, limit=MAX_REPLY_BYTES, what="command reply", version=COMMAND_VERSION)
    body = {k: v for k, v in data.items() if k != "sig"}
    try:
        return CommandReply.model_validate(body), data
    except ValidationError as exc:
        raise ContractError(f"command reply does not match the contract: {first_error(exc)}") from exc


def verify_reply(key: VerifyKey, reply: CommandReply, signed: dict[str, Any]) -> None:
    """SignatureError (a ContractError) unless ``key`` signed it and it names that key's device."""
    if device_id_from_public_key(key) != reply.device:
        raise ContractError("reply's device id does not match the key")
    verify_object(key, signed)


def fit_lines(lines: list[str], budget: int = MAX_RESULT_BYTES - 1024) -> list[str]:
    """The newest ``lines`` (each cut to MAX_LINE) that fit in ``budget`` bytes of JSON, oldest first."""
    kept: list[str] = []
    used = 0
    for line in reversed(lines):
        cut = line[:MAX_LINE]
        cost = len(json.dumps(cut, ensure_ascii=False).encode()) + 1
        if used + cost > budget:
            break
        kept.append(cut)
        used += cost
    kept.reverse()
    return kept
