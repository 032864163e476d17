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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations

from .private_files import private_database, private_dir

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


@migrations()
def m002_clock_placement(db: Database) -> None:
    """Each record's clock evidence in columns, and where central placed it in time (central/clock_placement.py)."""
    _run(db, """
    ALTER TABLE records ADD COLUMN device_wall TEXT;
    ALTER TABLE records ADD COLUMN synced INTEGER;
    ALTER TABLE records ADD COLUMN boot_id TEXT;
    ALTER TABLE records ADD COLUMN monotonic REAL;
    ALTER TABLE records ADD COLUMN placed_at TEXT;
    ALTER TABLE records ADD COLUMN placed_by TEXT;
    ALTER TABLE records ADD COLUMN clock_flag TEXT;
    UPDATE records SET device_wall = json_extract(body, '$.time.wall'), synced = json_extract(body, '$.time.synced'),
        boot_id = json_extract(body, '$.time.boot_id'), monotonic = json_extract(body, '$.time.monotonic');
    CREATE INDEX records_boot_anchor ON records(device, boot_id, seq) WHERE placed_by = 'device-synced';
    CREATE INDEX records_unanchored ON records(device, boot_id, seq) WHERE synced = 0 AND placed_by <> 'boot-anchor';
    CREATE INDEX records_clock_flag ON records(device, seq) WHERE clock_flag IS NOT NULL
    """)
    # Records stored before this migration are placed by the same rules, in chain order.
    from .clock_placement import ClockPlacer, Evidence

    placer = ClockPlacer(db.conn)
    placer.begin()
    for device, seq, wall, synced, boot_id, monotonic, received_at in db.conn.execute(
        "SELECT device, seq, device_wall, synced, boot_id, monotonic, received_at FROM records ORDER BY device, seq"
    ).fetchall():
        ev = Evidence(seq, wall, bool(synced), boot_id, monotonic)
        p = placer.place(device, ev, received_at)
        db.conn.execute("UPDATE records SET placed_at = ?, placed_by = ?, clock_flag = ? WHERE device = ? AND seq = ?",
                        [p.placed_at, p.placed_by, p.flag, device, seq])
        db.conn.execute("UPDATE attendance SET checked_in_at = ? WHERE device = ? AND seq = ?", [p.placed_at, device, seq])
        placer.stored(device, ev, p)


@migrations()
def m003_staff_accounts(db: Database) -> None:
    """Staff accounts (central/accounts.py), their sessions and API tokens, and the audit log (central/audit.py).

    Sessions and tokens keep only a SHA-256 of the secret: a copied database lets nobody log in.
    A session with no user was opened with the shared staff (bootstrap) token; its ``via``
    holds a fingerprint of that token, so changing the token ends those sessions.
    """
    _run(db, """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        role TEXT NOT NULL CHECK (role IN ('viewer', 'technician', 'admin')),
        password_hash TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, disabled_at TEXT);
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
        via TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL, remote TEXT);
    CREATE INDEX sessions_user ON sessions(user_id);
    CREATE INDEX sessions_expiry ON sessions(expires_at);
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL,
        last_used_at TEXT, revoked_at TEXT);
    CREATE INDEX api_tokens_user ON api_tokens(user_id);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        detail TEXT NOT NULL, remote TEXT);
    CREATE INDEX audit_action ON audit(action, id);
    CREATE INDEX audit_actor ON audit(actor, id)
    """)


@migrations()
def m004_enrolment_tables(db: Database) -> None:
    """Kiosk certificates (central/pki.py) and one-time enrolment tokens (central/enrol_tokens.py).

    IF NOT EXISTS: older code made both tables at call time, so a database may hold them already.
    ``revoked_at`` marks a certificate replaced by re-enrolment (the device itself stays registered).
    """
    _run(db, """
    CREATE TABLE IF NOT EXISTS device_certificates (
        serial TEXT PRIMARY KEY, device TEXT NOT NULL REFERENCES devices(id),
        issued_at TEXT NOT NULL, not_after TEXT NOT NULL, certificate TEXT NOT NULL, revoked_at TEXT);
    CREATE INDEX IF NOT EXISTS device_certificates_device ON device_certificates(device);
    CREATE TABLE IF NOT EXISTS enrol_tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT, token_sha256 TEXT NOT NULL UNIQUE, hall TEXT NOT NULL REFERENCES halls(id),
        created_at TEXT NOT NULL, expires_at TEXT NOT NULL, used_at TEXT, used_by TEXT)
    """)
    columns = {row[1] for row in db.conn.execute("PRAGMA table_info(device_certificates)")}
    if "revoked_at" not in columns:
        db.execute("ALTER TABLE device_certificates ADD COLUMN revoked_at TEXT")


@migrations()
def m005_record_validity(db: Database) -> None:
    """Why a stored record does not count as attendance (central/record_validity.py); NULL when it counts.

    The record stays in ``records`` so the chain is whole; the index lists a meeting's uncounted records.
    """
    _run(db, """
    ALTER TABLE records ADD COLUMN not_counted TEXT;
    CREATE INDEX records_not_counted ON records(meeting) WHERE not_counted IS NOT NULL
    """)


@migrations()
def m006_officers_and_pins(db: Database) -> None:
    """A meeting's secretary and chair (central/officers.py), and officers' PIN hashes (argon2id), which the
    kiosk checks when a secretary confirms a member whose face check failed."""
    _run(db, """
    ALTER TABLE meetings ADD COLUMN secretary TEXT REFERENCES members(id);
    ALTER TABLE meetings ADD COLUMN chair TEXT REFERENCES members(id);
    CREATE TABLE member_pins (
        member_id TEXT PRIMARY KEY REFERENCES members(id) ON DELETE CASCADE, pin_hash TEXT NOT NULL, set_at TEXT NOT NULL)
    """)


@migrations()
def m007_attempts_and_health(db: Database) -> None:
    """Refused check-in attempts from kiosks (central/attempts.py), one row per (device, seq), and the index
    the outcome mix reads accepted check-ins through. A kiosk's health needs no table: the last status is
    kept whole in ``device_status``, new fields included."""
    _run(db, """
    CREATE TABLE attempts (
        device TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL, outcome TEXT NOT NULL,
        card_kind TEXT, card_ref TEXT, member TEXT, meeting TEXT, face_distance REAL, liveness TEXT,
        device_wall TEXT NOT NULL, synced INTEGER NOT NULL, at TEXT NOT NULL, received_at TEXT NOT NULL,
        body TEXT NOT NULL, PRIMARY KEY (device, seq));
    CREATE INDEX attempts_device_at ON attempts(device, at);
    CREATE INDEX attempts_at ON attempts(at);
    CREATE INDEX records_device_placed ON records(device, placed_at)
    """)


@migrations()
def m008_fleet_history(db: Database) -> None:
    """The fleet views (central/fleet.py): what each kiosk last reported while online, in typed columns (the
    offline will carries nothing, so the last known queue, disk and faults stay), its state changes, and its
    chart samples (one per 5 min, kept 8 days)."""
    _run(db, """
    CREATE TABLE device_fleet (
        device TEXT PRIMARY KEY, state TEXT NOT NULL, changed_at TEXT NOT NULL, reported_at TEXT,
        boot_count INTEGER, uptime_s REAL, sampled_at INTEGER, queue_depth INTEGER, oldest_unsent_age_s REAL,
        version TEXT, disk_free_bytes INTEGER, temperature_c REAL, fault_count INTEGER NOT NULL DEFAULT 0,
        bundle_version INTEGER, report TEXT);
    CREATE TABLE device_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, at TEXT NOT NULL, kind TEXT NOT NULL,
        from_state TEXT, to_state TEXT NOT NULL, reason TEXT NOT NULL);
    CREATE INDEX device_events_device ON device_events(device, id);
    CREATE INDEX device_events_at ON device_events(at);
    CREATE TABLE device_samples (
        device TEXT NOT NULL, at INTEGER NOT NULL, queue_depth INTEGER, oldest_unsent_age_s REAL, temperature_c REAL,
        disk_free_bytes INTEGER, memory_used_bytes INTEGER, PRIMARY KEY (device, at)) WITHOUT ROWID;
    CREATE INDEX device_samples_at ON device_samples(at);
    CREATE INDEX devices_hall ON devices(hall);
    INSERT INTO device_fleet (device, state, changed_at, reported_at, queue_depth, oldest_unsent_age_s, version,
        disk_free_bytes, temperature_c, fault_count, bundle_version, boot_count, uptime_s, report)
    SELECT device, state, last_seen, last_seen, json_extract(status, '$.queue_depth'),
        json_extract(status, '$.oldest_unsent_age_s'), json_extract(status, '$.version'),
        json_extract(status, '$.disk_free_bytes'), json_extract(status, '$.temperature_c'),
        COALESCE(json_array_length(status, '$.faults'), 0), json_extract(status, '$.bundle_version'),
        json_extract(status, '$.boot_count'), json_extract(status, '$.uptime_s'), status
    FROM device_status
    """)


@migrations()
def m009_alerts(db: Database) -> None:
    """Alerts (central/alerts/): staff's changes to each rule's thresholds (defaults live in code), the alerts
    with their lifecycle, each alert's history, and conditions seen but not yet held long enough to open one.
    At most one unresolved alert per (rule, subject); a resolved one is reopened, not duplicated, within a window."""
    _run(db, """
    CREATE TABLE alert_rules (
        rule TEXT PRIMARY KEY, enabled INTEGER NOT NULL, params TEXT NOT NULL, updated_at TEXT NOT NULL,
        updated_by TEXT NOT NULL);
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT NOT NULL, subject TEXT NOT NULL, device TEXT, hall TEXT,
        state TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
        summary TEXT NOT NULL, detail TEXT NOT NULL, first_opened_at TEXT NOT NULL, opened_at TEXT NOT NULL,
        last_true_at TEXT NOT NULL, clear_since TEXT, acked_at TEXT, acked_by TEXT, resolved_at TEXT,
        opened_count INTEGER NOT NULL DEFAULT 1);
    CREATE UNIQUE INDEX alerts_live ON alerts(rule, subject) WHERE state <> 'resolved';
    CREATE INDEX alerts_state ON alerts(state, id);
    CREATE INDEX alerts_resolved ON alerts(rule, subject, resolved_at) WHERE state = 'resolved';
    CREATE TABLE alert_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, alert INTEGER NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
        at TEXT NOT NULL, event TEXT NOT NULL, actor TEXT, detail TEXT);
    CREATE INDEX alert_events_alert ON alert_events(alert, id);
    CREATE TABLE alert_pending (
        rule TEXT NOT NULL, subject TEXT NOT NULL, since TEXT NOT NULL, evidence TEXT, PRIMARY KEY (rule, subject))
    """)


@migrations()
def m010_commands(db: Database) -> None:
    """Remote commands to kiosks (central/commands.py): what was sent, by whom, and the kiosk's verified reply."""
    _run(db, """
    CREATE TABLE commands (
        id TEXT PRIMARY KEY, device TEXT NOT NULL, kind TEXT NOT NULL, args TEXT NOT NULL, issued_at TEXT NOT NULL,
        expires_at TEXT NOT NULL, issued_by TEXT NOT NULL, wire TEXT NOT NULL, replied_at TEXT, ok INTEGER,
        result TEXT, reply TEXT);
    CREATE INDEX commands_device ON commands(device, issued_at)
    """)


@migrations()
def m011_names_and_regions(db: Database) -> None:
    """Names staff read instead of ids (central/registry.py): a kiosk's own name (hall + position, given at
    enrolment by the token's position), a hall's commune and province (official names and codes from
    central/regions.py), and the position an enrolment token gives the kiosk that redeems it."""
    _run(db, """
    ALTER TABLE devices ADD COLUMN name TEXT;
    ALTER TABLE halls ADD COLUMN commune TEXT;
    ALTER TABLE halls ADD COLUMN commune_code INTEGER;
    ALTER TABLE halls ADD COLUMN province TEXT;
    ALTER TABLE halls ADD COLUMN province_code INTEGER;
    ALTER TABLE enrol_tokens ADD COLUMN position TEXT;
    CREATE INDEX halls_region ON halls(province_code, commune_code);
    UPDATE devices SET name = IFNULL((SELECT h.name FROM halls h WHERE h.id = devices.hall), devices.hall) || ' — máy ' || (
        SELECT COUNT(*) FROM devices d2 WHERE d2.hall = devices.hall
        AND (d2.registered_at < devices.registered_at OR (d2.registered_at = devices.registered_at AND d2.id <= devices.id)))
    """)


@migrations()
def m012_membership_history(db: Database) -> None:
    """Each member's history in cells (central/membership.py): who was expected at a meeting is who belonged to its
    cell on its date, not today's members. Members enrolled before this history existed are seeded with one
    ``joined`` event in their current cell on the date of their ``created_at`` (always set; the epoch only if it
    cannot be read as a date). The triggers keep enrolment (central/registry.py) in the history without changing it:
    a new member joins on the day it is enrolled; re-enrolling a member under another cell, outside
    ``hall central member transfer``, is recorded as a transfer on that day."""
    _run(db, """
    CREATE TABLE membership_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, member TEXT NOT NULL REFERENCES members(id) ON DELETE CASCADE,
        cell TEXT NOT NULL REFERENCES cells(id), at TEXT NOT NULL CHECK (date(at, '+0 days') IS at),  -- '+0 days' normalises 02-30, which date() keeps
        kind TEXT NOT NULL CHECK (kind IN ('joined', 'transferred_in', 'transferred_out', 'probationary', 'official',
                                           'left', 'deceased')),
        recorded_by TEXT NOT NULL, recorded_at TEXT NOT NULL, note TEXT);
    CREATE INDEX membership_events_member ON membership_events(member, at, id);
    CREATE INDEX membership_events_cell ON membership_events(cell, at);
    INSERT INTO membership_events (member, cell, at, kind, recorded_by, recorded_at, note)
        SELECT id, cell, IFNULL(date(created_at), '1970-01-01'), 'joined', 'migration', strftime('%Y-%m-%dT%H:%M:%fZ'),
               'enrolled before membership history was kept' FROM members ORDER BY created_at, id
    """)
    # One execute each: a trigger's body holds semicolons, which _run splits on.
    db.execute("""
    CREATE TRIGGER membership_enrolled AFTER INSERT ON members BEGIN
        INSERT INTO membership_events (member, cell, at, kind, recorded_by, recorded_at, note)
        VALUES (NEW.id, NEW.cell, IFNULL(date(NEW.created_at), date('now')), 'joined', 'enrolment',
                strftime('%Y-%m-%dT%H:%M:%fZ'), NULL);
    END""")
    db.execute("""
    CREATE TRIGGER membership_reenrolled AFTER UPDATE OF cell ON members WHEN NEW.cell IS NOT OLD.cell
        AND IFNULL((SELECT cell FROM membership_events WHERE member = NEW.id ORDER BY at DESC, id DESC LIMIT 1), '')
            IS NOT NEW.cell BEGIN
        INSERT INTO membership_events (member, cell, at, kind, recorded_by, recorded_at, note)
        VALUES (NEW.id, OLD.cell, date('now'), 'transferred_out', 'enrolment', strftime('%Y-%m-%dT%H:%M:%fZ'),
                're-enrolled under another cell');
        INSERT INTO membership_events (member, cell, at, kind, recorded_by, recorded_at, note)
        VALUES (NEW.id, NEW.cell, date('now'), 'transferred_in', 'enrolment', strftime('%Y-%m-%dT%H:%M:%fZ'),
                're-enrolled under another cell');
    END""")



@migrations()
def m013_attendance_analytics(db: Database) -> None:
    """Attendance a committee can act on (central/attendance_sheet.py, central/attendance_rollup.py).

    - A cell's place: its commune and province (official names and codes, central/regions.py), for the roll-ups.
      Seeded from the hall of the cell's latest meeting.
    - A meeting is closed once (``closed_at``/``closed_by``): its sheet (one row per expected member, and per member
      counted present who was not expected) is frozen then. ``status``/``reason`` keep what the close said and can
      never change (triggers); a later change is an amendment (``attendance_amendments``: who, when, from, to) and
      only moves ``status_now``/``reason_now``.
    - Excuses entered before the close (``absence_excuses``), audited like every staff write.
    - ``meeting_totals``: a closed meeting's counts from ``status_now``, with the cell's place and the meeting's day
      (the halls' local date), so commune and province roll-ups read one small row per meeting.
    """
    _run(db, """
    ALTER TABLE cells ADD COLUMN commune TEXT;
    ALTER TABLE cells ADD COLUMN commune_code INTEGER;
    ALTER TABLE cells ADD COLUMN province TEXT;
    ALTER TABLE cells ADD COLUMN province_code INTEGER;
    CREATE INDEX cells_region ON cells(province_code, commune_code);
    UPDATE cells SET (commune, commune_code, province, province_code) = (
        SELECT h.commune, h.commune_code, h.province, h.province_code FROM meetings m JOIN halls h ON h.id = m.hall
        WHERE m.cell = cells.id ORDER BY m.starts_at DESC, m.id DESC LIMIT 1);
    ALTER TABLE meetings ADD COLUMN closed_at TEXT;
    ALTER TABLE meetings ADD COLUMN closed_by TEXT;
    CREATE INDEX meetings_cell ON meetings(cell, starts_at);
    CREATE TABLE absence_excuses (
        meeting TEXT NOT NULL REFERENCES meetings(id) ON DELETE CASCADE, member TEXT NOT NULL REFERENCES members(id),
        reason TEXT NOT NULL CHECK (reason IN ('illness', 'work', 'leave', 'family', 'other')), note TEXT,
        recorded_by TEXT NOT NULL, recorded_at TEXT NOT NULL, PRIMARY KEY (meeting, member));
    CREATE TABLE meeting_sheet (
        meeting TEXT NOT NULL REFERENCES meetings(id), member TEXT NOT NULL REFERENCES members(id),
        expected INTEGER NOT NULL CHECK (expected IN (0, 1)),  -- 0: counted present but not a member of the cell that day
        standing TEXT,
        status TEXT NOT NULL CHECK (status IN ('present', 'late', 'excused', 'unexcused')),
        reason TEXT, checked_in_at TEXT, minutes_late INTEGER, device TEXT, seq INTEGER, hash TEXT, override TEXT,
        status_now TEXT NOT NULL CHECK (status_now IN ('present', 'late', 'excused', 'unexcused')),
        reason_now TEXT, amended_at TEXT,
        PRIMARY KEY (meeting, member));
    CREATE INDEX meeting_sheet_member ON meeting_sheet(member, meeting);
    CREATE TABLE attendance_amendments (
        id INTEGER PRIMARY KEY AUTOINCREMENT, meeting TEXT NOT NULL REFERENCES meetings(id),
        member TEXT NOT NULL REFERENCES members(id),
        from_status TEXT NOT NULL, to_status TEXT NOT NULL CHECK (to_status IN ('present', 'late', 'excused', 'unexcused')),
        reason TEXT, note TEXT, recorded_by TEXT NOT NULL, recorded_at TEXT NOT NULL);
    CREATE INDEX attendance_amendments_meeting ON attendance_amendments(meeting, id);
    CREATE TABLE meeting_totals (
        meeting TEXT PRIMARY KEY REFERENCES meetings(id), cell TEXT NOT NULL, commune_code INTEGER, province_code INTEGER,
        day TEXT NOT NULL,  -- the meeting's date in the halls' time zone (Asia/Ho_Chi_Minh), YYYY-MM-DD
        expected INTEGER NOT NULL, present INTEGER NOT NULL, late INTEGER NOT NULL, excused INTEGER NOT NULL,
        unexcused INTEGER NOT NULL, overrides INTEGER NOT NULL, not_expected INTEGER NOT NULL, amendments INTEGER NOT NULL);
    CREATE INDEX meeting_totals_cell ON meeting_totals(cell, day);
    CREATE INDEX meeting_totals_commune ON meeting_totals(commune_code, day);
    CREATE INDEX meeting_totals_province ON meeting_totals(province_code, day)
    """)
    # One execute each: a trigger's body holds semicolons, which _run splits on.
    db.execute("""
    CREATE TRIGGER meeting_sheet_frozen BEFORE UPDATE OF meeting, member, expected, standing, status, reason, checked_in_at,
        minutes_late, device, seq, hash, override ON meeting_sheet BEGIN
        SELECT RAISE(ABORT, 'a closed meeting''s sheet is frozen: record an amendment');
    END""")
    db.execute("""
    CREATE TRIGGER meeting_sheet_kept BEFORE DELETE ON meeting_sheet BEGIN
        SELECT RAISE(ABORT, 'a closed meeting''s sheet is never deleted');
    END""")
    db.execute("""
    CREATE TRIGGER attendance_amendments_kept BEFORE UPDATE ON attendance_amendments BEGIN
        SELECT RAISE(ABORT, 'an amendment is never edited: record another');
    END""")
    db.execute("""
    CREATE TRIGGER attendance_amendments_not_deleted BEFORE DELETE ON attendance_amendments BEGIN
        SELECT RAISE(ABORT, 'an amendment is never deleted');
    END""")


@migrations()
def m014_secretary_role(db: Database) -> None:
    """The ``secretary`` staff role (between viewer and technician: records excuses, closes and amends meeting sheets).

    SQLite cannot alter a CHECK constraint, so ``users`` is rebuilt. ``sessions`` and ``api_tokens`` reference it with
    ON DELETE CASCADE and foreign keys are on here, so dropping ``users`` alone would delete every session and token:
    the three are rebuilt together (copies made, children dropped first, then renamed; the rename points the copies'
    references at ``users``).
    """
    _run(db, """
    CREATE TABLE users_new (
        id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        role TEXT NOT NULL CHECK (role IN ('viewer', 'secretary', 'technician', 'admin')),
        password_hash TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, disabled_at TEXT);
    INSERT INTO users_new (id, username, role, password_hash, created_at, updated_at, disabled_at)
        SELECT id, username, role, password_hash, created_at, updated_at, disabled_at FROM users;
    CREATE TABLE sessions_new (
        token_hash TEXT PRIMARY KEY, user_id INTEGER REFERENCES users_new(id) ON DELETE CASCADE,
        via TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL, remote TEXT);
    INSERT INTO sessions_new (token_hash, user_id, via, created_at, expires_at, remote)
        SELECT token_hash, user_id, via, created_at, expires_at, remote FROM sessions;
    CREATE TABLE api_tokens_new (
        id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users_new(id) ON DELETE CASCADE,
        name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL,
        last_used_at TEXT, revoked_at TEXT);
    INSERT INTO api_tokens_new (id, user_id, name, token_hash, created_at, last_used_at, revoked_at)
        SELECT id, user_id, name, token_hash, created_at, last_used_at, revoked_at FROM api_tokens;
    DROP TABLE api_tokens;
    DROP TABLE sessions;
    DROP TABLE users;
    ALTER TABLE users_new RENAME TO users;
    ALTER TABLE sessions_new RENAME TO sessions;
    ALTER TABLE api_tokens_new RENAME TO api_tokens;
    CREATE INDEX sessions_user ON sessions(user_id);
    CREATE INDEX sessions_expiry ON sessions(expires_at);
    CREATE INDEX api_tokens_user ON api_tokens(user_id)
    """)


@migrations()
def m015_rollup_indexes(db: Database) -> None:
    """A province's roll-up (central/attendance_rollup.py) sums 120,000 meetings' totals twice (per cell, per month):
    an index holding every summed column answers both from the index alone (bench/analytics.py: a pass 137 -> 58 ms).
    The meetings still open are few; a partial index finds them without reading the year's closed ones. Early
    warnings count unexcused absences, a few per meeting: partial indexes hold only those rows, by meeting and by
    member, so a province's warnings read them and not its 2.4 million sheet rows."""
    _run(db, """
    DROP INDEX meeting_totals_province;
    CREATE INDEX meeting_totals_province ON meeting_totals(province_code, day, cell, expected, present, late, excused,
        unexcused, overrides, not_expected);
    DROP INDEX meeting_totals_commune;
    CREATE INDEX meeting_totals_commune ON meeting_totals(commune_code, day, cell, expected, present, late, excused,
        unexcused, overrides, not_expected);
    CREATE INDEX meetings_open ON meetings(starts_at) WHERE closed_at IS NULL;
    CREATE INDEX meeting_sheet_unexcused ON meeting_sheet(meeting, member) WHERE status_now = 'unexcused' AND expected = 1;
    CREATE INDEX meeting_sheet_unexcused_member ON meeting_sheet(member, meeting)
        WHERE status_now = 'unexcused' AND expected = 1
    """)

def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        private_dir(self.path.parent)  # members' personal data: 0700 / 0600, also for a looser earlier install
        private_database(self.path)
        self.lock = threading.RLock()
        self.rejection_limits: Any = None  # central.rejection_log.Limits; None = its defaults
        self.rejections_added = 0  # since the last prune of the rejections table
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

    @contextmanager
    def savepoint(self) -> Iterator[sqlite3.Connection]:
        """A savepoint inside the caller's transaction, under a fixed name (one prepared statement, not one per call)."""
        conn = self.db.conn
        with self.lock:
            conn.execute("SAVEPOINT message")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK TO message")
                    conn.execute("RELEASE message")
                raise
            conn.execute("RELEASE message")

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


DATABASE_FILE = "central.db"  # in central's data directory


def open_store(data_dir: Path) -> Store:
    return Store(Path(data_dir) / DATABASE_FILE)
