"""What the collector does with one message: verify, chain-check, store — or reject with a reason.

Runs inside the caller's transaction (the collector commits a batch, then
publishes acks), so an ack never claims a record that is not on disk.

Chain rules per device, with ``head`` = highest seq stored with an unbroken chain:
- seq == head+1 and prev == hash(head): stored, head advances, held records that
  now continue the chain are drained;
- seq <= head with the stored hash: a replay, nothing changes (the ack is repeated);
- seq <= head with another hash, or prev not matching: a fork — kept in
  ``rejections`` with ``alarm = 1``, never overwrites what is stored;
- seq > head+1: held in ``pending`` until the gap fills.
"""

from __future__ import annotations

import base64
import logging
from collections import Counter
from dataclasses import dataclass

from contract import GENESIS_HASH, Topics, decode_status, parse_record, verify_key_from_text, verify_record
from contract.errors import ContractError
from contract.records import SignedRecord
from contract.topics import Kind

from .store import Store, utc_now

log = logging.getLogger("central.ingest")

MAX_KEPT_PAYLOAD = 64 * 1024  # a rejected message is kept, but not without limit


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str


def head(store: Store, device: str) -> Head:
    r = store.row("SELECT seq, hash FROM chain WHERE device = ?", [device])
    return Head(r["seq"], r["hash"]) if r else Head(0, GENESIS_HASH)


def reject(store: Store, topic: str, device: str | None, reason: str, payload: bytes, *, alarm: bool = False) -> None:
    kept = payload[:MAX_KEPT_PAYLOAD]
    if len(payload) > len(kept):
        reason += f" (payload of {len(payload)} bytes truncated to {len(kept)})"
    try:
        text, encoding = kept.decode("utf-8"), "text"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    store.db.execute(
        "INSERT INTO rejections (received_at, topic, device, reason, alarm, payload, payload_encoding) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [utc_now(), topic, device, reason, int(alarm), text, encoding],
    )
    (log.error if alarm else log.warning)("rejected message on %s: %s", topic, reason)


class Ingest:
    """Stateless apart from counters; every decision is read from and written to the store."""

    def __init__(self, store: Store, topics: Topics):
        self.store, self.topics = store, topics
        self.counts: Counter[str] = Counter()

    def handle(self, topic: str, payload: bytes, *, retained: bool = False) -> str | None:
        """Process one message; return the device id whose ack should be (re)published, if any.

        ``retained``: the broker replayed a stored copy (on subscribe), so it says
        nothing about when the device was last heard from.
        """
        try:
            device, kind = self.topics.parse(topic)
        except ContractError as exc:
            return self._reject(topic, None, str(exc), payload)
        if kind is Kind.ATTENDANCE:
            return self._attendance(topic, device, payload)
        if kind is Kind.STATUS:
            self._status(topic, device, payload, retained)
            return None
        return self._reject(topic, device, f"central does not accept {kind.value} messages", payload)

    def _reject(self, topic: str, device: str | None, reason: str, payload: bytes, *, alarm: bool = False) -> None:
        self.counts["forks" if alarm else "rejected"] += 1
        reject(self.store, topic, device, reason, payload, alarm=alarm)
        return None

    def _registered(self, device: str) -> tuple[dict | None, str | None]:
        row = self.store.row("SELECT public_key, revoked_at FROM devices WHERE id = ?", [device])
        if row is None:
            return None, f"unknown device {device}"
        if row["revoked_at"]:
            return None, f"device {device} was revoked on {row['revoked_at']}"
        return row, None

    def _attendance(self, topic: str, topic_device: str, payload: bytes) -> str | None:
        try:
            record = parse_record(payload)
        except ContractError as exc:
            return self._reject(topic, topic_device, f"bad record: {exc}", payload)
        row, problem = self._registered(record.device)
        if problem:
            return self._reject(topic, topic_device, problem, payload)
        if record.device != topic_device:
            return self._reject(topic, topic_device, f"record of device {record.device} published on the topic of {topic_device}", payload)
        try:
            verify_record(verify_key_from_text(row["public_key"]), record)
        except ContractError as exc:
            return self._reject(topic, topic_device, f"bad signature: {exc}", payload)
        self._chain(topic, record, payload)
        return record.device

    def _chain(self, topic: str, record: SignedRecord, payload: bytes) -> None:
        device, h = record.device, head(self.store, record.device)
        digest = record.hash
        if record.seq <= h.seq:
            stored = self.store.scalar("SELECT hash FROM records WHERE device = ? AND seq = ?", [device, record.seq])
            if stored == digest:
                self.counts["duplicates"] += 1
                return
            self._reject(topic, device, f"fork: record {record.seq} differs from the stored one (stored {stored}, received {digest})", payload, alarm=True)
            return
        if record.seq > h.seq + 1:
            held = self.store.scalar("SELECT hash FROM pending WHERE device = ? AND seq = ?", [device, record.seq])
            if held == digest:
                self.counts["duplicates"] += 1
            elif held is not None:
                self._reject(topic, device, f"fork: two different records {record.seq} arrived after a gap (held {held}, received {digest})", payload, alarm=True)
            else:
                self.store.db.execute(
                    "INSERT INTO pending (device, seq, hash, payload, received_at) VALUES (?, ?, ?, ?, ?)",
                    [device, record.seq, digest, record.to_wire().decode(), utc_now()],
                )
                self.counts["held"] += 1
            return
        if not self._append(topic, record, h, payload):
            return
        self._drain(topic, device)

    def _append(self, topic: str, record: SignedRecord, h: Head, payload: bytes) -> bool:
        if record.prev != h.hash:
            self._reject(topic, record.device, f"fork: record {record.seq} names prev {record.prev} but record {h.seq} has hash {h.hash}", payload, alarm=True)
            return False
        now, digest = utc_now(), record.hash
        db = self.store.db
        db.execute(
            "INSERT INTO records (device, seq, hash, prev, meeting, member, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [record.device, record.seq, digest, record.prev, record.meeting, record.member, record.to_wire().decode(), now],
        )
        # First check-in wins: a later record for the same member and meeting stays a record only.
        db.execute(
            "INSERT OR IGNORE INTO attendance (meeting, member, device, seq, checked_in_at) VALUES (?, ?, ?, ?, ?)",
            [record.meeting, record.member, record.device, record.seq, record.time.wall],
        )
        db.execute(
            "INSERT INTO chain (device, seq, hash, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(device) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, updated_at = excluded.updated_at",
            [record.device, record.seq, digest, now],
        )
        self.counts["stored"] += 1
        return True

    def _drain(self, topic: str, device: str) -> None:
        while True:
            h = head(self.store, device)
            held = self.store.row("SELECT payload FROM pending WHERE device = ? AND seq = ?", [device, h.seq + 1])
            if held is None:
                return
            self.store.db.execute("DELETE FROM pending WHERE device = ? AND seq = ?", [device, h.seq + 1])
            raw = held["payload"].encode()
            # Verified when it was held; parsing again cannot fail for a payload we wrote.
            if not self._append(topic, parse_record(raw), h, raw):
                return

    def _status(self, topic: str, topic_device: str, payload: bytes, retained: bool) -> None:
        try:
            status = decode_status(payload)
        except ContractError as exc:
            self._reject(topic, topic_device, f"bad status: {exc}", payload)
            return
        if status.device != topic_device:
            self._reject(topic, topic_device, f"status of device {status.device} published on the topic of {topic_device}", payload)
            return
        _, problem = self._registered(topic_device)
        if problem:
            self._reject(topic, topic_device, problem, payload)
            return
        seen = utc_now()
        if retained:
            seen = self.store.scalar("SELECT last_seen FROM device_status WHERE device = ?", [topic_device]) or status.at or seen
        self.store.db.execute(
            "INSERT INTO device_status (device, state, status, last_seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(device) DO UPDATE SET state = excluded.state, status = excluded.status, last_seen = excluded.last_seen",
            [topic_device, status.state, status.model_dump_json(), seen],
        )
        self.counts["status"] += 1
