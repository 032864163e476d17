"""The kiosk's queue of refused check-in attempts, on their way to central (contract/attempts.py).

Each refusal (a face mismatch, an unknown card, a wrong officer PIN…) becomes a signed
``SignedAttempt`` kept in its own SQLite file in the data directory until the broker
acknowledges it (QoS 1 PUBACK; the uplink sends them while online), so a hall offline for
a day still reports its mix when it returns.

It must never slow a check-in: ``note`` only puts the facts on an in-memory queue (dropping
them, counted, if even that is full); one thread signs, writes and prunes. The file is
bounded: beyond ``max_rows`` unsent attempts the oldest go first, and how many went is kept
and reported in the status. Unlike records these are statistics, so ``synchronous=NORMAL``:
a power cut may lose the last few, never a check-in.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from nacl.signing import SigningKey

from contract import AttemptBody, DeviceTime, device_id_from_public_key, sign_attempt
from contract.attempts import RefusedOutcome
from contract.records import CardKind

log = logging.getLogger("edge_agent.attempts")

MAX_UNSENT = 2000  # about a month of a busy hall's refusals offline; each is ~400 bytes
MEMORY_QUEUE = 256  # facts waiting for the writer thread
REFUSED = frozenset(get_args(RefusedOutcome))
CARD_KINDS = frozenset(get_args(CardKind))
# Outcomes about the card itself: a keyed hash of it shows repeats without revealing it.
_CARD_REF_OUTCOMES = frozenset({"unknown_card", "bad_qr"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class AttemptQueue:
    def __init__(self, path: Path, *, signing_key: SigningKey, max_rows: int = MAX_UNSENT):
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._key = signing_key
        self.device_id = device_id_from_public_key(signing_key.verify_key)
        # A per-device secret for card_ref: central (or anyone reading the broker) cannot test a guessed card
        # UID or CCCD number against it.
        self._card_secret = hashlib.sha256(b"hall card-ref\0" + bytes(signing_key)).digest()
        self.max_rows = max_rows
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        # A queue file made anew (first start, or a lost file) numbers from the clock in ms, so its
        # attempts continue above any seq central already holds for this device.
        self._conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', ?)", [int(time.time() * 1000)])
        self._conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped', 0)")
        self._facts: queue.Queue[dict[str, Any] | None] = queue.Queue(MEMORY_QUEUE)
        self._unwritten_drops = 0
        self._drops_lock = threading.Lock()
        self._noted = self._handled = 0  # facts queued / written (or lost) by the writer
        self._written = threading.Condition()
        self.listeners: list[Callable[[], None]] = []
        self._writer = threading.Thread(target=self._write_loop, name="attempts-writer", daemon=True)
        self._writer.start()

    # -- the check-in side (event loop): never waits ------------------------------------

    def note(self, result: Any, event: Any, reading: DeviceTime) -> None:
        """A check-in result was shown; queue it if it refused someone. ``event``: the card event it came from."""
        outcome = getattr(result.outcome, "value", result.outcome)
        if outcome not in REFUSED:
            return
        kind = getattr(event, "kind", None)
        override = outcome.startswith("override_")  # the event then is an officer's tap, not the member's card
        card_kind = kind if kind in CARD_KINDS and not override else None
        card_ref = None
        if card_kind and outcome in _CARD_REF_OUTCOMES and getattr(event, "value", None):
            card_ref = hmac.new(self._card_secret, f"{kind}:{event.value}".encode(), hashlib.sha256).hexdigest()[:16]
        failed = getattr(result, "failed", None)
        fact = dict(outcome=outcome, card_kind=card_kind, card_ref=card_ref, member=result.member, meeting=result.meeting,
                    face_distance=result.distance,
                    face_threshold=getattr(failed, "threshold", None), liveness=getattr(failed, "liveness", None),
                    time=reading)
        try:
            self._facts.put_nowait(fact)
            self._noted += 1
        except queue.Full:
            with self._drops_lock:  # never held across disk I/O, unlike _lock
                self._unwritten_drops += 1

    # -- writer thread --------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            fact = self._facts.get()
            if fact is None:
                return
            try:
                self._write(fact)
            except Exception:  # a bad fact or a full disk: lose this statistic, keep the kiosk going
                log.exception("could not queue a refused attempt")
                with self._drops_lock:
                    self._unwritten_drops += 1
            with self._written:
                self._handled += 1
                self._written.notify_all()
            for notify in self.listeners:
                notify()

    def _write(self, fact: dict[str, Any]) -> None:
        with self._lock:
            seq = self._conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0]
            signed = sign_attempt(self._key, AttemptBody(device=self.device_id, seq=seq, **fact))
            with self._drops_lock:
                drops, self._unwritten_drops = self._unwritten_drops, 0
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("INSERT INTO attempts (seq, payload, created_at) VALUES (?, ?, ?)",
                                   [seq, signed.to_wire(), time.time()])
                self._conn.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", [seq + 1])
                over = self._conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] - self.max_rows
                if over > 0:
                    self._conn.execute("DELETE FROM attempts WHERE seq IN (SELECT seq FROM attempts ORDER BY seq LIMIT ?)", [over])
                    drops += over
                if drops:
                    self._conn.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", [drops])
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                with self._drops_lock:
                    self._unwritten_drops += drops
                raise

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every noted attempt is written (for an orderly stop); False on timeout."""
        with self._written:
            return self._written.wait_for(lambda: self._handled >= self._noted, timeout)

    # -- the uplink side ------------------------------------------------------------------

    def unsent(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        with self._lock:
            rows = self._conn.execute("SELECT seq, payload FROM attempts WHERE seq > ? ORDER BY seq LIMIT ?",
                                      [after, limit]).fetchall()
        return [(s, bytes(p)) for s, p in rows]

    def delivered(self, seq: int) -> None:
        """The broker has it (PUBACK): central's persistent session will receive it."""
        with self._lock:
            self._conn.execute("DELETE FROM attempts WHERE seq = ?", [seq])

    def depth(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]

    def dropped(self) -> int:
        with self._lock:
            stored = self._conn.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()[0]
        with self._drops_lock:
            return stored + self._unwritten_drops

    def close(self) -> None:
        self._facts.put(None)
        self._writer.join(5)
        with self._lock:
            self._conn.close()
