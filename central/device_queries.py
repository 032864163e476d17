"""Queries behind the device routes (central/api/routes/devices.py) and the staff page's alarm count:
each kiosk with its last status and chain head, a kiosk's stored records, the open alarms.

Kept out of the route handlers so that the handlers only check roles and shape answers, and a
later PostgreSQL backend has one place to implement."""

from __future__ import annotations

from typing import Any

from .store import Store


def devices_with_status(store: Store) -> list[dict[str, Any]]:
    """Every registered kiosk, by hall: its last status (JSON text), acked chain head, held records,
    alarms and records whose time central doubts."""
    return store.rows(
        "SELECT d.id, d.hall, d.registered_at, d.revoked_at, s.state, s.status, s.last_seen, "
        "COALESCE(c.seq, 0) AS acked_seq, (SELECT COUNT(*) FROM pending p WHERE p.device = d.id) AS held, "
        "(SELECT COUNT(*) FROM rejections j WHERE j.device = d.id AND j.alarm = 1) AS alarms, "
        "(SELECT COUNT(*) FROM records r WHERE r.device = d.id AND r.clock_flag IS NOT NULL) AS clock_flags "
        "FROM devices d LEFT JOIN device_status s ON s.device = d.id LEFT JOIN chain c ON c.device = d.id "
        "ORDER BY d.hall, d.id"
    )


def device_records(store: Store, device: str, *, flagged: bool, limit: int, before_seq: int | None) -> list[dict[str, Any]]:
    """A kiosk's stored records, newest first; ``flagged``: only those whose time central doubts;
    ``before_seq``: page backwards."""
    where, params = ["device = ?"], [device]
    if flagged:
        where.append("clock_flag IS NOT NULL")
    if before_seq is not None:
        where.append("seq < ?")
        params.append(before_seq)
    return store.rows(
        "SELECT seq, meeting, member, received_at, device_wall AS device_time, synced, boot_id, monotonic, "
        f"placed_at, placed_by, clock_flag FROM records WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
        [*params, limit],
    )


def open_alarms(store: Store) -> int:
    return store.scalar("SELECT COUNT(*) FROM rejections WHERE alarm = 1") or 0


def names(store: Store, members: list[str], meetings: list[str]) -> dict[str, dict[str, str]]:
    """Members' names and meetings' titles by id (ids unknown to central are left out), for pages that
    list records and attempts by id."""
    def by_id(sql: str, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        return {r["id"]: r["name"] for r in store.rows(sql.format(marks=marks), ids)}
    return {"members": by_id("SELECT id, name FROM members WHERE id IN ({marks})", members),
            "meetings": by_id("SELECT id, title AS name FROM meetings WHERE id IN ({marks})", meetings)}
