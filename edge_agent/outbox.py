"""The durable queue of signed records: SQLite in WAL mode.

A record is signed, chained and committed here *before* the member is told
"checked in". ``synchronous=FULL``: in WAL mode, NORMAL may lose the last
committed transactions on power loss (the WAL is not fsynced at each commit);
FULL fsyncs the WAL on every commit, so a committed check-in survives a power
cut. At a handful of check-ins a minute the fsync cost is irrelevant.

Records are deleted only when central's signed ack covers their sequence
number, so the outbox holds exactly what central has not yet confirmed.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from contract import GENESIS_HASH, DeviceTime, Proof, RecordBody, SignedRecord, device_id_from_public_key, sign_record

from .errors import AlreadyCheckedIn, DiskFullError

log = logging.getLogger("edge_agent.outbox")

MIGRATIONS: list[str] = [
    # 1: chain head, queued records, local check-ins (for "already checked in"), last ack
    f"""
    CREATE TABLE chain (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
    INSERT INTO chain VALUES (1, 0, '{GENESIS_HASH}');
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY,
        hash TEXT NOT NULL,
        payload BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE checkins (
        meeting TEXT NOT NULL,
        member TEXT NOT NULL,
        seq INTEGER NOT NULL,
        wall TEXT NOT NULL,
        PRIMARY KEY (meeting, member)
    );
    CREATE TABLE acked (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL, at REAL);
    INSERT INTO acked VALUES (1, 0, '{GENESIS_HASH}', NULL);
    """
]


def migrate(conn: sqlite3.Connection, migrations: list[str]) -> None:
    """Apply numbered migrations tracked in PRAGMA user_version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(migrations[version:], start=version + 1):
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")


def _make_private(db_path: Path) -> None:
    """The data dir 0700 and the outbox 0600, also when an older kiosk left them looser.

    Queued check-ins say who attended which meeting. SQLite creates the -wal and -shm files with
    the database file's mode, so the database is made 0600 before SQLite opens it.
    """
    directory = db_path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    os.close(os.open(db_path, os.O_RDWR | os.O_CREAT, 0o600))
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.chmod(db_path.with_name(db_path.name + suffix), 0o600)
        except FileNotFoundError:
            pass


@dataclass(frozen=True)
class Queued:
    seq: int
    payload: bytes


class Outbox:
    def __init__(self, path: Path, *, signing_key: SigningKey, min_free_bytes: int = 0, max_pages: int | None = None):
        self.path = Path(path)
        _make_private(self.path)
        self._key = signing_key
        self.device_id = device_id_from_public_key(signing_key.verify_key)
        self._min_free = min_free_bytes
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        if max_pages:
            # Lets tests (and a cautious deployment) cap the file without a small filesystem.
            self._conn.execute(f"PRAGMA max_page_count={int(max_pages)}")
        migrate(self._conn, MIGRATIONS)
        self.listeners: list[Callable[[], None]] = []
        self.full = False  # the last append failed for want of space; cleared by the next success or ack

    # -- writing ---------------------------------------------------------------

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.path.parent).free

    def check_space(self) -> None:
        if self._min_free and self.free_bytes() < self._min_free:
            self.full = True
            raise DiskFullError(errno.ENOSPC, f"only {self.free_bytes()} bytes free in {self.path.parent}")

    def existing_checkin(self, meeting: str, member: str) -> tuple[int, str] | None:
        """(seq, device wall time) of this member's check-in to this meeting, if any."""
        with self._lock:
            row = self._conn.execute("SELECT seq, wall FROM checkins WHERE meeting=? AND member=?", (meeting, member)).fetchone()
        return (row[0], row[1]) if row else None

    def append(self, *, meeting: str, member: str, proof: Proof, time_reading: DeviceTime) -> SignedRecord:
        """Sign, chain and durably queue one check-in; raise AlreadyCheckedIn or DiskFullError."""
        self.check_space()
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    existing = self._conn.execute(
                        "SELECT seq FROM checkins WHERE meeting=? AND member=?", (meeting, member)
                    ).fetchone()
                    if existing:
                        raise AlreadyCheckedIn(meeting, member, existing[0])
                    seq, prev = self._conn.execute("SELECT seq, hash FROM chain WHERE id=1").fetchone()
                    body = RecordBody(
                        device=self.device_id, seq=seq + 1, prev=prev, meeting=meeting, member=member,
                        proof=proof, time=time_reading,
                    )
                    record = sign_record(self._key, body)
                    self._conn.execute(
                        "INSERT INTO outbox (seq, hash, payload, created_at) VALUES (?, ?, ?, ?)",
                        (record.seq, record.hash, record.to_wire(), time.time()),
                    )
                    self._conn.execute(
                        "INSERT INTO checkins (meeting, member, seq, wall) VALUES (?, ?, ?, ?)",
                        (meeting, member, record.seq, time_reading.wall),
                    )
                    self._conn.execute("UPDATE chain SET seq=?, hash=? WHERE id=1", (record.seq, record.hash))
                    self._conn.execute("COMMIT")
                    self.full = False
                except BaseException:
                    # SQLite may already have rolled back itself (e.g. on SQLITE_FULL).
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if "full" in str(exc):
                    self.full = True
                    raise DiskFullError(errno.ENOSPC, f"outbox cannot grow: {exc}") from exc
                raise
        for notify in self.listeners:
            notify()
        return record

    # -- sending ----------------------------------------------------------------

    def after(self, seq: int, limit: int) -> list[Queued]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
        return [Queued(s, bytes(p)) for s, p in rows]

    def acknowledge(self, seq: int, record_hash: str) -> int:
        """Central has stored everything up to ``seq``: drop those records. Returns how many were dropped."""
        with self._lock:
            head_seq, _ = self.head()
            if seq > head_seq:
                # Central claims records this device never made: keep ours, raise it loudly.
                log.error("ack for seq %d beyond our chain head %d; ignoring", seq, head_seq)
                return 0
            row = self._conn.execute("SELECT hash FROM outbox WHERE seq=?", (seq,)).fetchone()
            if row and row[0] != record_hash:
                log.error("ack for seq %d names hash %s, ours is %s: fork; keeping records", seq, record_hash[:12], row[0][:12])
                return 0
            self._conn.execute("BEGIN IMMEDIATE")
            cur = self._conn.execute("DELETE FROM outbox WHERE seq <= ?", (seq,))
            self._conn.execute(
                "UPDATE acked SET seq=?, hash=?, at=? WHERE id=1 AND seq < ?", (seq, record_hash, time.time(), seq)
            )
            self._conn.execute("COMMIT")
            dropped = cur.rowcount
            if dropped:
                self.full = False  # freed pages are reused by the next append
        for notify in self.listeners:
            notify()
        return dropped

    # -- reading state ----------------------------------------------------------

    def head(self) -> tuple[int, str]:
        with self._lock:
            return self._conn.execute("SELECT seq, hash FROM chain WHERE id=1").fetchone()

    def acked_seq(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT seq FROM acked WHERE id=1").fetchone()[0]

    def depth(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def oldest_unsent_age(self) -> float | None:
        with self._lock:
            row = self._conn.execute("SELECT MIN(created_at) FROM outbox").fetchone()
        return None if row[0] is None else max(0.0, time.time() - row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
