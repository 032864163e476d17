"""What the collector does with one message: verify, chain-check, place in time, store — or reject with a reason.

Runs inside the caller's transaction (the collector commits a batch, then
publishes acks), so an ack never claims a record that is not on disk.

Chain rules per device, with ``head`` = highest seq stored with an unbroken chain:
- seq == head+1 and prev == hash(head): stored, head advances, held records that
  now continue the chain are drained;
- seq <= head with the stored hash: a replay, nothing changes (the ack is repeated);
- seq <= head with another hash, or prev not matching: a fork — kept in
  ``rejections`` with ``alarm = 1``, never overwrites what is stored;
- seq > head+1: held in ``pending`` until the gap fills.

Each stored record is placed in time by ``clock_placement`` in the same transaction,
then judged by ``record_validity`` (member, cell, meeting, hall, time window): a
record that may not count is stored all the same — the chain stays whole and is
acknowledged — but makes no attendance row, and raises an alarm.

A record that makes central fail (an internal error) is kept as an alarm with its
device and is not acknowledged: the kiosk resends it (on no ack progress) and it is
stored as soon as central can handle it, while later records wait in ``pending``.
Data-driven failures of placement or judging (an absurd value) do not get that
far: the record is stored, placed at receipt and not counted, with the reason.

Speed (bench/ingest.py): the signature and the hash are computed over the same
canonical bytes ``contract`` defines (RFC 8785 of the record as the contract
model dumps it), but those bytes come from ``canonical_forms``, which uses the
C JSON encoder when every value is in the range where its output is provably
the RFC 8785 output, and falls back to ``contract.canonical_bytes`` otherwise.
Within a batch (``Ingest.batch``) device keys, chain heads and the last record
per device are remembered; a rolled-back savepoint must call ``forget``.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from contract import (
    GENESIS_HASH,
    Topics,
    canonical_bytes,
    decode_status,
    device_id_from_public_key,
    parse_record,
    sha256_hex,
    verify_key_from_text,
)
from contract.attempts import parse_attempt, verify_attempt
from contract.errors import ContractError
from contract.keys import b64d
from contract.records import SignedRecord
from contract.topics import Kind

from . import attempts, commands, rejection_log
from .clock_placement import RECEIVED, ClockPlacer, Evidence, Placement, iso, parse_time
from .fleet import status_stored as fleet_status_stored
from .record_validity import DEFAULT_EARLY_S, RecordValidity
from .store import Store, utc_now

log = logging.getLogger("central.ingest")

_MAX_SAFE_INT = 2**53 - 1  # RFC 8785 refuses integers a double cannot hold
_SET_HEAD = (
    "INSERT INTO chain (device, seq, hash, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(device) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, updated_at = excluded.updated_at"
)


# (verify key and device id, why its messages are refused, its hall)
_Device = tuple[tuple[VerifyKey, str] | None, str | None, str | None]


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str


def head(store: Store, device: str) -> Head:
    r = store.row("SELECT seq, hash FROM chain WHERE device = ?", [device])
    return Head(r["seq"], r["hash"]) if r else Head(0, GENESIS_HASH)


def reject(store: Store, topic: str, device: str | None, reason: str, payload: bytes, *, alarm: bool = False) -> None:
    """Keep a rejected message with its reason, in bounded space (central/rejection_log.py)."""
    rejection_log.add(store, topic, device, reason, payload, alarm=alarm)


# Canonical bytes -----------------------------------------------------------------


class _NotPlain(Exception):
    pass


def _plain(value: Any) -> Any:
    """``value`` as json.dumps must see it to write exactly what RFC 8785 writes; raise _NotPlain if unsure.

    Strings are escaped identically (both escape only ", \\ and C0 controls, with
    lower-case \\u00xx); ASCII keys sort alike in both; integers within 2**53 are
    written alike. Floats: a whole number is written as an integer by RFC 8785
    (3.0 is "3"), so it becomes an int below 1e16, where that is exact; other
    floats only where Python's repr has no exponent, since there it is already
    ECMAScript's shortest round-trip form (1e-07 would be "1e-7").
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return value
        raise _NotPlain
    if kind is float:
        if not math.isfinite(value):
            raise _NotPlain
        if value.is_integer():
            if abs(value) < 1e16:
                return int(value)
            raise _NotPlain
        if "e" in repr(value):
            raise _NotPlain
        return value
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str or not k.isascii():
                raise _NotPlain
            out[k] = _plain(v)
        return out
    if kind is list:
        return [_plain(v) for v in value]
    raise _NotPlain


_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _encode(prepared: Any) -> bytes:
    return _ENCODER.encode(prepared).encode("utf-8")


def canonical_forms(record: SignedRecord) -> tuple[bytes, bytes]:
    """(wire, signed body): ``record.to_wire()`` and ``canonical_bytes(record.body)``, computed fast.

    Raises ValueError (rfc8785's CanonicalizationError) for a value RFC 8785 cannot encode.
    """
    data = record.model_dump(mode="json")
    try:
        prepared = _plain(data)
        wire = _encode(prepared)
        # The body is the wire without its "sig" member. Inside a JSON string a quote is always
        # escaped, so `,"sig":` can only be that member; if it is not there exactly once (say,
        # "sig" sorting first), encode the body on its own.
        member = b',"sig":' + _encode(prepared["sig"])
        if wire.count(member) == 1:
            return wire, wire.replace(member, b"", 1)
        del prepared["sig"]
        return wire, _encode(prepared)
    except (_NotPlain, UnicodeEncodeError):  # a lone surrogate: the contract's encoder refuses it with its own error
        wire = canonical_bytes(data)
        del data["sig"]
        return wire, canonical_bytes(data)


@lru_cache(maxsize=4096)
def _verify_key(public_key: str) -> tuple[VerifyKey, str]:
    key = verify_key_from_text(public_key)
    return key, device_id_from_public_key(key)


def check_signature(key: VerifyKey, key_device: str, record: SignedRecord, body: bytes) -> None:
    """What ``contract.verify_record`` checks, over bytes already made canonical; raises ContractError."""
    if key_device != record.device:
        raise ContractError("record's device id does not match the key")
    raw = b64d(record.sig)
    if len(raw) != 64:
        raise ContractError("an Ed25519 signature is 64 bytes")
    try:
        key.verify(body, raw)
    except BadSignatureError as exc:
        raise ContractError("signature does not verify") from exc


class Ingest:
    """Counters apart, every decision is read from and written to the store; batch memory only speeds that up."""

    def __init__(self, store: Store, topics: Topics, *, attendance_early_s: float = DEFAULT_EARLY_S):
        self.store, self.topics = store, topics
        self.counts: Counter[str] = Counter()
        self.clock = ClockPlacer(store.db.conn)
        self.validity = RecordValidity(store.db.conn, attendance_early_s)
        self._heads: dict[str, Head] | None = None
        self._devices: dict[str, _Device] | None = None
        self._nothing_held: set[str] | None = None  # devices known to have no record in ``pending``
        self._moved: dict[str, tuple[Head, str]] | None = None  # chain heads to write when the batch ends

    @contextmanager
    def batch(self, *, defer_chain: bool = True) -> Iterator[None]:
        """Remember keys, heads and last records while one transaction runs.

        Nothing else writes them meanwhile: the store's lock is held for the whole
        transaction. With ``defer_chain`` the ``chain`` rows are written once per
        device when the batch ends without an exception (still inside the
        transaction); a batch whose messages run in savepoints must not defer,
        since a rolled-back savepoint would leave the remembered heads unknowable.
        """
        self._heads, self._devices, self._nothing_held = {}, {}, set()
        self._moved = {} if defer_chain else None
        self.clock.begin()
        self.validity.begin()
        try:
            yield
            if self._moved:
                self.store.db.conn.executemany(_SET_HEAD, [(d, h.seq, h.hash, at) for d, (h, at) in self._moved.items()])
        finally:
            self._heads = self._devices = self._nothing_held = self._moved = None
            self.clock.end()
            self.validity.end()

    def forget(self) -> None:
        """A savepoint was rolled back: what was remembered may describe rows that are gone."""
        if self._moved is not None:
            raise RuntimeError("a batch that defers chain heads cannot survive a rolled-back savepoint")
        if self._heads is not None:
            self._heads, self._devices, self._nothing_held = {}, {}, set()
        self.clock.forget()
        if self._heads is not None:
            self.validity.begin()

    def handle(self, topic: str, payload: bytes, *, retained: bool = False) -> str | None:
        """Process one message; return the device id whose ack should be (re)published, if any.

        ``retained``: the broker replayed a stored copy (on subscribe), so it says
        nothing about when the device was last heard from.
        """
        try:
            device, kind = self.topics.parse(topic)
        except ContractError as exc:
            return self.reject(topic, None, str(exc), payload)
        if kind is Kind.ATTENDANCE:
            return self._attendance(topic, device, payload)
        if kind is Kind.STATUS:
            self._status(topic, device, payload, retained)
            return None
        if kind is Kind.ATTEMPT:
            self._attempt(topic, device, payload)
            return None
        if kind is Kind.COMMAND_REPLY:
            commands.take_reply(self, topic, device, payload)
            return None
        return self.reject(topic, device, f"central does not accept {kind.value} messages", payload)

    def reject(self, topic: str, device: str | None, reason: str, payload: bytes, *, alarm: bool = False) -> None:
        """Keep ``payload`` as a rejection with ``reason`` (bounded: central/rejection_log.py) and count it."""
        self.counts["forks" if alarm else "rejected"] += 1
        reject(self.store, topic, device, reason, payload, alarm=alarm)
        return None

    def registered(self, device: str) -> _Device:
        if self._devices is not None and device in self._devices:
            return self._devices[device]
        row = self.store.db.conn.execute("SELECT public_key, revoked_at, hall FROM devices WHERE id = ?", [device]).fetchone()
        if row is None:
            found: _Device = (None, f"unknown device {device}", None)
        elif row[1]:
            found = (None, f"device {device} was revoked on {row[1]}", row[2])
        else:
            found = (_verify_key(row[0]), None, row[2])
        if self._devices is not None:
            self._devices[device] = found
        return found

    def sender(self, what: str, device: str, topic_device: str) -> tuple[Any, str | None]:
        """(verify key, None) when ``device`` is registered, unrevoked and the one whose topic the message came on;
        else (None, why). One place for the checks every kind of device message needs."""
        if device != topic_device:
            return None, f"{what} of device {device} published on the topic of {topic_device}"
        key, problem, _ = self.registered(device)
        return (None, problem) if problem else (key, None)

    def _head(self, device: str) -> Head:
        if self._heads is not None and device in self._heads:
            return self._heads[device]
        r = self.store.db.conn.execute("SELECT seq, hash FROM chain WHERE device = ?", [device]).fetchone()
        h = Head(r[0], r[1]) if r else Head(0, GENESIS_HASH)
        if self._heads is not None:
            self._heads[device] = h
        return h

    def _attendance(self, topic: str, topic_device: str, payload: bytes) -> str | None:
        try:
            record = parse_record(payload)
            wire, body = canonical_forms(record)
        except (ContractError, ValueError) as exc:
            return self.reject(topic, topic_device, f"bad record: {exc}", payload)
        key, problem = self.sender("record", record.device, topic_device)
        if problem:
            return self.reject(topic, topic_device, problem, payload)
        try:
            check_signature(*key, record, body)  # type: ignore[misc]
        except ContractError as exc:
            return self.reject(topic, topic_device, f"bad signature: {exc}", payload)
        self._chain(topic, record, wire, payload)
        return record.device

    def _chain(self, topic: str, record: SignedRecord, wire: bytes, payload: bytes) -> None:
        device, h = record.device, self._head(record.device)
        digest = sha256_hex(wire)
        conn = self.store.db.conn
        if record.seq <= h.seq:
            stored = self.store.scalar("SELECT hash FROM records WHERE device = ? AND seq = ?", [device, record.seq])
            if stored == digest:
                self.counts["duplicates"] += 1
                return
            self.reject(topic, device, f"fork: record {record.seq} differs from the stored one (stored {stored}, received {digest})", payload, alarm=True)
            return
        if record.seq > h.seq + 1:
            held = conn.execute("SELECT hash FROM pending WHERE device = ? AND seq = ?", [device, record.seq]).fetchone()
            if held and held[0] == digest:
                self.counts["duplicates"] += 1
            elif held is not None:
                self.reject(topic, device, f"fork: two different records {record.seq} arrived after a gap (held {held[0]}, received {digest})", payload, alarm=True)
            else:
                conn.execute(
                    "INSERT INTO pending (device, seq, hash, payload, received_at) VALUES (?, ?, ?, ?, ?)",
                    [device, record.seq, digest, wire.decode(), utc_now()],
                )
                if self._nothing_held is not None:
                    self._nothing_held.discard(device)
                self.counts["held"] += 1
            return
        moment = datetime.now(UTC)
        now = iso(moment)
        if not self._append(topic, record, h, wire, digest, payload, (now, moment), now):
            return
        self._drain(topic, device, now)

    def _append(
        self, topic: str, record: SignedRecord, h: Head, wire: bytes, digest: str, payload: bytes,
        received: tuple[str, datetime | None], now: str,
    ) -> bool:
        """``received``: when central received the record, as text and (if at hand) parsed."""
        if record.prev != h.hash:
            self.reject(topic, record.device, f"fork: record {record.seq} names prev {record.prev} but record {h.seq} has hash {h.hash}", payload, alarm=True)
            return False
        t = record.time
        ev = Evidence(record.seq, t.wall, t.synced, t.boot_id, t.monotonic)
        received_at = received[0]
        received_dt = received[1] or parse_time(received_at)
        assert received_dt is not None, received_at
        not_counted: str | None
        # Arithmetic and value errors come from the record's own values: they must not stop its chain.
        try:
            placement = self.clock.place(record.device, ev, received_dt)
        except (ArithmeticError, ValueError) as exc:
            placement = Placement(iso(received_dt), RECEIVED, f"central could not place this record in time ({type(exc).__name__}: {exc})")
        try:
            not_counted = self.validity.problem(member=record.member, meeting=record.meeting,
                                                device_hall=self.registered(record.device)[2],
                                                placement=placement, received=received_dt)
        except (ArithmeticError, ValueError) as exc:
            not_counted = f"central could not check this record ({type(exc).__name__}: {exc})"
        conn = self.store.db.conn
        conn.execute(
            "INSERT INTO records (device, seq, hash, prev, meeting, member, body, received_at, "
            "device_wall, synced, boot_id, monotonic, placed_at, placed_by, clock_flag, not_counted) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [record.device, record.seq, digest, record.prev, record.meeting, record.member, wire.decode(), received_at,
             t.wall, int(t.synced), t.boot_id, t.monotonic, placement.placed_at, placement.placed_by, placement.flag, not_counted],
        )
        if not_counted is None:
            # First valid check-in wins: a later record for the same member and meeting stays a record only.
            conn.execute(
                "INSERT OR IGNORE INTO attendance (meeting, member, device, seq, checked_in_at) VALUES (?, ?, ?, ?, ?)",
                [record.meeting, record.member, record.device, record.seq, placement.placed_at],
            )
        else:
            self.counts["not_counted"] += 1
            reject(self.store, topic, record.device,
                   f"record {record.seq} stored but not counted as attendance: {not_counted}", payload, alarm=True)
        moved = Head(record.seq, digest)
        if self._moved is not None:
            self._moved[record.device] = (moved, now)
        else:
            conn.execute(_SET_HEAD, [record.device, record.seq, digest, now])
        if self._heads is not None:
            self._heads[record.device] = moved
        self.clock.stored(record.device, ev, placement)
        self.counts["stored"] += 1
        if placement.flag:
            self.counts["clock_flagged"] += 1
        return True

    def _drain(self, topic: str, device: str, now: str) -> None:
        if self._nothing_held is not None and device in self._nothing_held:
            return
        conn = self.store.db.conn
        while True:
            h = self._head(device)
            held = conn.execute("SELECT payload, received_at FROM pending WHERE device = ? AND seq = ?", [device, h.seq + 1]).fetchone()
            if held is None:
                if self._nothing_held is not None and conn.execute("SELECT 1 FROM pending WHERE device = ? LIMIT 1", [device]).fetchone() is None:
                    self._nothing_held.add(device)
                return
            conn.execute("DELETE FROM pending WHERE device = ? AND seq = ?", [device, h.seq + 1])
            raw = held[0].encode()
            # Verified when it was held, and stored in canonical form: parsing again cannot fail.
            record = parse_record(raw)
            if not self._append(topic, record, h, raw, sha256_hex(raw), raw, (held[1], None), now):
                return

    def _attempt(self, topic: str, topic_device: str, payload: bytes) -> None:
        """A refused check-in (central/attempts.py): verified like a record, kept once, never acknowledged by
        an ack (the broker's PUBACK after the commit is what lets the kiosk forget it)."""
        try:
            attempt = parse_attempt(payload)  # refuses an oversize payload before parsing it
        except ContractError as exc:
            self.reject(topic, topic_device, f"bad attempt: {exc}", payload)
            return
        key, problem = self.sender("attempt", attempt.device, topic_device)
        if problem:
            self.reject(topic, topic_device, problem, payload)
            return
        try:
            verify_attempt(key[0], attempt)  # type: ignore[index]
        except ContractError as exc:
            self.reject(topic, topic_device, f"bad attempt signature: {exc}", payload)
            return
        refused = attempts.store(self.store.db.conn, attempt, attempt.to_wire(), datetime.now(UTC))
        if refused:
            self.reject(topic, topic_device, refused, payload)
            return
        self.counts["attempts"] += 1

    def _status(self, topic: str, topic_device: str, payload: bytes, retained: bool) -> None:
        try:
            status = decode_status(payload)
        except ContractError as exc:
            self.reject(topic, topic_device, f"bad status: {exc}", payload)
            return
        _, problem = self.sender("status", status.device, topic_device)
        if problem:
            self.reject(topic, topic_device, problem, payload)
            return
        seen = utc_now()
        if retained:
            seen = self.store.scalar("SELECT last_seen FROM device_status WHERE device = ?", [topic_device]) or status.at or seen
        self.store.db.execute(
            "INSERT INTO device_status (device, state, status, last_seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(device) DO UPDATE SET state = excluded.state, status = excluded.status, last_seen = excluded.last_seen",
            [topic_device, status.state, status.model_dump_json(), seen],
        )
        fleet_status_stored(self.store.db.conn, topic_device, status, seen=seen, retained=retained)
        self.counts["status"] += 1
