"""The kiosk's queue of refused attempts (edge_agent/attempts.py): bounded, durable, off the check-in path."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from nacl.signing import SigningKey

from contract import DeviceTime, parse_attempt, verify_attempt
from edge_agent.attempts import AttemptQueue

NOW = DeviceTime(wall="2030-01-01T01:05:00Z", synced=True, boot_id="b1", monotonic=12.5)
KEY = SigningKey.generate()


def note(queue, outcome="face_mismatch", kind="member_card", value="04AA", member="m1"):
    queue.note(SimpleNamespace(outcome=outcome, member=member, meeting="mt1", distance=0.7, failed=None),
               SimpleNamespace(kind=kind, value=value), NOW)


def test_the_queue_stays_bounded_drops_the_oldest_and_says_how_many(tmp_path):
    queue = AttemptQueue(tmp_path / "attempts.sqlite3", signing_key=KEY, max_rows=50)
    try:
        for _ in range(80):
            note(queue)
        assert queue.flush()
        assert queue.depth() == 50 and queue.dropped() == 30
        seqs = [seq for seq, _ in queue.unsent(0, 1000)]
        assert seqs == list(range(seqs[0], seqs[0] + 50))  # the newest 50 kept, in order
        first = seqs[0]
    finally:
        queue.close()
    reopened = AttemptQueue(tmp_path / "attempts.sqlite3", signing_key=KEY, max_rows=50)
    try:  # kept across a restart, and numbering goes on
        assert reopened.depth() == 50 and reopened.dropped() == 30
        note(reopened)
        assert reopened.flush() and reopened.unsent(0, 1000)[-1][0] == first + 50
    finally:
        reopened.close()


def test_only_refusals_are_queued_signed_by_the_device_and_an_unknown_card_only_as_a_keyed_hash(tmp_path):
    queue = AttemptQueue(tmp_path / "attempts.sqlite3", signing_key=KEY)
    try:
        for outcome in ("accepted", "already", "override_accepted", "override_pin"):
            note(queue, outcome)
        note(queue, "unknown_card", value="04FFFFFFFFFF01", member=None)
        note(queue, "unknown_card", value="04FFFFFFFFFF01", member=None)
        assert queue.flush()
        sent = [parse_attempt(p) for _, p in queue.unsent(0, 10)]
        assert [a.outcome for a in sent] == ["unknown_card", "unknown_card"]
        for a in sent:
            verify_attempt(KEY.verify_key, a)
        assert sent[0].card_ref == sent[1].card_ref and sent[0].card_ref not in ("04FFFFFFFFFF01", None)
        assert b"04FFFFFFFFFF01" not in b"".join(p for _, p in queue.unsent(0, 10))
        queue.delivered(sent[0].seq)
        assert queue.depth() == 1
    finally:
        queue.close()


def test_noting_an_attempt_does_not_wait_for_the_disk(tmp_path):
    queue = AttemptQueue(tmp_path / "attempts.sqlite3", signing_key=KEY)
    # The writer is stuck on the disk (a slow SD card): another thread holds the file's lock.
    held, release = threading.Event(), threading.Event()

    def stuck_disk():
        with queue._lock:
            held.set()
            release.wait(30)

    blocker = threading.Thread(target=stuck_disk)
    blocker.start()
    try:
        assert held.wait(5)
        started = time.perf_counter()
        for _ in range(300):  # more than the in-memory queue holds: the excess is counted, not waited for
            note(queue)
        took = time.perf_counter() - started
        release.set()
        blocker.join(5)
        assert took < 1.0
        assert queue.flush(30)
        assert queue.depth() + queue.dropped() == 300 and queue.dropped() > 0
    finally:
        release.set()
        queue.close()
