"""Central's SQLite store: schema through numbered migrations, one connection behind a lock.

WAL lets the page read while the collector writes; ``synchronous=FULL`` makes a
commit survive a power cut, which matters because an ack is published only
after its commit. Every caller (collector thread, API threads, CLI) goes
through ``transaction()`` or the read helpers, which hold one re-entrant lock,
so the single connection is never used by two threads at once. Other processes
(a CLI enrolling members while the service runs) wait on ``busy_timeout``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations

migrations = Migrations("hall-central")


def _run(db: Database, script: str) -> None:
    # executescript() would COMMIT the migration's transaction half-way.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


@migrations()
def m001_initial(db: Database) -> None:
    _run(db, """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta (key, value) VALUES ('bundle_version', '1');
    CREATE TABLE halls (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE TABLE cells (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE TABLE members (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, cell TEXT NOT NULL REFERENCES cells(id),
        cccd TEXT UNIQUE, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE INDEX members_cell ON members(cell);
    CREATE TABLE cards (uid TEXT PRIMARY KEY, member_id TEXT NOT NULL REFERENCES members(id) ON DELETE CASCADE);
    CREATE INDEX cards_member ON cards(member_id);
    CREATE TABLE templates (
        id INTEGER PRIMARY KEY, member_id TEXT NOT NULL REFERENCES members(id) ON DELETE CASCADE,
        encoding_sealed BLOB NOT NULL, source TEXT, created_at TEXT NOT NULL);
    CREATE INDEX templates_member ON templates(member_id);
    CREATE TABLE meetings (
        id TEXT PRIMARY KEY, cell TEXT NOT NULL REFERENCES cells(id), hall TEXT NOT NULL REFERENCES halls(id),
        title TEXT NOT NULL, starts_at TEXT NOT NULL, ends_at TEXT NOT NULL, CHECK (ends_at > starts_at));
    CREATE INDEX meetings_hall ON meetings(hall, ends_at);
    CREATE TABLE devices (
        id TEXT PRIMARY KEY, public_key TEXT NOT NULL UNIQUE, hall TEXT NOT NULL REFERENCES halls(id),
        registered_at TEXT NOT NULL, revoked_at TEXT);
    CREATE TABLE records (
        device TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL, prev TEXT NOT NULL,
        meeting TEXT NOT NULL, member TEXT NOT NULL, body TEXT NOT NULL, received_at TEXT NOT NULL,
        UNIQUE (device, seq));
    CREATE INDEX records_meeting ON records(meeting);
    CREATE TABLE chain (device TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE pending (
        device TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL, payload TEXT NOT NULL,
        received_at TEXT NOT NULL, PRIMARY KEY (device, seq));
    CREATE TABLE rejections (
        id INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL, topic TEXT NOT NULL, device TEXT,
        reason TEXT NOT NULL, alarm INTEGER NOT NULL DEFAULT 0,
        payload TEXT NOT NULL, payload_encoding TEXT NOT NULL CHECK (payload_encoding IN ('text', 'base64')));
    CREATE INDEX rejections_alarm ON rejections(alarm) WHERE alarm = 1;
    CREATE TABLE attendance (
        meeting TEXT NOT NULL, member TEXT NOT NULL, device TEXT NOT NULL, seq INTEGER NOT NULL,
        checked_in_at TEXT NOT NULL, PRIMARY KEY (meeting, member));
    CREATE TABLE device_status (device TEXT PRIMARY KEY, state TEXT NOT NULL, status TEXT NOT NULL, last_seen TEXT NOT NULL)
    """)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        conn = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False)
        self.db = Database(conn)
        self.db.enable_wal()
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        with self.lock:
            # IMMEDIATE: two processes opening a fresh file must not both apply migration 1.
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                migrations.apply(self.db)
            except BaseException:
                self.db.conn.execute("ROLLBACK")
                raise
            self.db.conn.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """One atomic unit of writes; nested calls become savepoints."""
        with self.lock, self.db.atomic():
            yield self.db

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self.lock:
            cur = self.db.conn.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def row(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        with self.lock:
            r = self.db.conn.execute(sql, params).fetchone()
            return r[0] if r else None

    def bundle_version(self) -> int:
        return int(self.scalar("SELECT value FROM meta WHERE key = 'bundle_version'"))

    def bump_bundle_version(self) -> int:
        """Call inside the transaction that changed what a bundle holds."""
        with self.transaction() as db:
            db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'bundle_version'")
            return self.bundle_version()


def open_store(data_dir: Path) -> Store:
    return Store(Path(data_dir) / "central.db")
