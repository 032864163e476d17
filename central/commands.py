"""Remote commands at central: issuing one (stored, audited, signed, published) and taking the kiosk's reply.

The route calls ``issue`` then ``publish``; the collector's ingest calls ``take_reply`` for each
message on a ``command_reply`` topic, inside its batch transaction. A reply is kept only when it
verifies with the replying kiosk's registered key, names the kiosk whose topic it came on, and
answers a command central sent to that kiosk; anything else goes to ``rejections`` with why.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from nacl.signing import SigningKey

from contract import Topics
from contract.commands import Command, encode_command, new_command, parse_reply, verify_reply
from contract.errors import ContractError
from contract.topics import QOS, RETAIN, Kind

from . import audit
from .errors import CentralError, NotFound, RegistryError
from .store import Store, utc_now

KEEP_PER_DEVICE = 100  # commands (with their replies, each at most 64 KiB) kept per kiosk; older ones go


class NotSent(CentralError, RuntimeError):
    """The broker did not take the command; it stays listed without a reply, and staff may send another."""


class _Ingest(Protocol):
    store: Store

    def sender(self, what: str, device: str, topic_device: str) -> tuple[Any, str | None]: ...

    def reject(self, topic: str, device: str | None, reason: str, payload: bytes, *, alarm: bool = False) -> None: ...


def issue(store: Store, key: SigningKey, device: str, kind: str, *, lines: int | None, from_seq: int | None,
          actor: str, remote: str | None) -> tuple[Command, bytes]:
    """Make, sign, store and audit a command for a registered, unrevoked kiosk; NotFound / RegistryError otherwise."""
    row = store.row("SELECT revoked_at FROM devices WHERE id = ?", [device])
    if row is None:
        raise NotFound(f"no device {device}")
    if row["revoked_at"]:
        raise RegistryError(f"device {device} was revoked on {row['revoked_at']}")
    try:
        command = new_command(device, kind, lines=lines, from_seq=from_seq)
    except ContractError as exc:
        raise RegistryError(str(exc)) from None
    wire = encode_command(key, command)
    with store.transaction() as db:
        db.execute(
            "INSERT INTO commands (id, device, kind, args, issued_at, expires_at, issued_by, wire) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [command.id, device, command.kind, command.args.model_dump_json(exclude_none=True), command.issued_at,
             command.expires_at, actor, wire.decode()],
        )
        db.execute(
            "DELETE FROM commands WHERE device = ? AND id NOT IN "
            "(SELECT id FROM commands WHERE device = ? ORDER BY issued_at DESC, rowid DESC LIMIT ?)",
            [device, device, KEEP_PER_DEVICE],
        )
        audit.record(store, actor, f"device.command.{command.kind}",
                     {"device": device, "command": command.id, **command.args.model_dump(exclude_none=True)}, remote)
    return command, wire


def publish(collector: Any, command: Command, wire: bytes) -> None:
    """QoS 1, not retained (contract.commands says why): a kiosk offline now never sees it."""
    topics: Topics = collector.topics
    info = collector.client.publish(topics.command(command.device), wire, qos=QOS[Kind.COMMAND], retain=RETAIN[Kind.COMMAND])
    if info.rc != 0:
        raise NotSent(f"the broker did not take the command (rc {info.rc})")


def take_reply(ingest: _Ingest, topic: str, topic_device: str, payload: bytes) -> None:
    """Verify and store one reply, or reject it with the reason. Runs in the collector's transaction."""
    try:
        reply, signed = parse_reply(payload)  # refuses an oversize payload before parsing it
    except ContractError as exc:
        ingest.reject(topic, topic_device, f"bad command reply: {exc}", payload)
        return
    key, problem = ingest.sender("reply", reply.device, topic_device)
    if problem:
        ingest.reject(topic, topic_device, problem, payload)
        return
    try:
        verify_reply(key[0], reply, signed)
    except ContractError as exc:
        ingest.reject(topic, topic_device, f"bad command reply signature: {exc}", payload)
        return
    conn = ingest.store.db.conn
    sent = conn.execute("SELECT kind, reply FROM commands WHERE id = ? AND device = ?", [reply.id, reply.device]).fetchone()
    if sent is None:
        ingest.reject(topic, topic_device, f"reply to command {reply.id}, which central did not send to {reply.device}", payload)
        return
    if sent[0] != reply.kind:
        ingest.reject(topic, topic_device, f"reply says {reply.kind} but command {reply.id} was {sent[0]}", payload)
        return
    text = payload.decode()
    if sent[1] is not None:
        if sent[1] != text:
            ingest.reject(topic, topic_device, f"a second, different reply to command {reply.id}", payload)
        return
    conn.execute("UPDATE commands SET replied_at = ?, ok = ?, result = ?, reply = ? WHERE id = ?",
                 [utc_now(), int(reply.ok), reply.result.model_dump_json(exclude_none=True), text, reply.id])


def listing(store: Store, device: str, *, limit: int) -> list[dict[str, Any]]:
    """A kiosk's commands, newest first, each with its reply when one came: ``state`` is replied, waiting or expired."""
    now = utc_now()
    out = []
    for r in store.rows(
        "SELECT id, kind, args, issued_at, expires_at, issued_by, replied_at, ok, result FROM commands "
        "WHERE device = ? ORDER BY issued_at DESC, rowid DESC LIMIT ?", [device, limit]
    ):
        r["args"] = json.loads(r["args"])
        r["result"] = json.loads(r["result"]) if r["result"] else None
        r["ok"] = None if r["ok"] is None else bool(r["ok"])
        r["state"] = "replied" if r["replied_at"] else "expired" if r["expires_at"] <= now else "waiting"
        out.append(r)
    return out
