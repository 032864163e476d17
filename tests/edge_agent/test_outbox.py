"""The outbox: chained, durable, deleted only on ack, refuses rather than lies when full."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from nacl.signing import SigningKey

from contract import GENESIS_HASH, DeviceTime, Proof, parse_record, verify_record
from edge_agent.errors import AlreadyCheckedIn, DiskFullError
from edge_agent.outbox import Outbox

PROOF = Proof(card_kind="member_card", face_distance=0.3, face_threshold=0.5)
TIME = DeviceTime(wall="2026-11-25T01:00:00.000Z", synced=True, boot_id="b", monotonic=1.0)


def test_records_chain_and_survive_reopen(tmp_path):
    key = SigningKey.generate()
    box = Outbox(tmp_path / "o.sqlite3", signing_key=key)
    r1 = box.append(meeting="M", member="A", proof=PROOF, time_reading=TIME)
    r2 = box.append(meeting="M", member="B", proof=PROOF, time_reading=TIME)
    assert (r1.seq, r1.prev, r2.seq, r2.prev) == (1, GENESIS_HASH, 2, r1.hash)
    box.close()
    again = Outbox(tmp_path / "o.sqlite3", signing_key=key)
    queued = again.after(0, 10)
    assert [q.seq for q in queued] == [1, 2]
    for q in queued:
        verify_record(key.verify_key, parse_record(q.payload))
    assert again.append(meeting="M", member="C", proof=PROOF, time_reading=TIME).prev == r2.hash


def test_second_checkin_of_member_is_refused_without_a_record(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", signing_key=SigningKey.generate())
    box.append(meeting="M", member="A", proof=PROOF, time_reading=TIME)
    with pytest.raises(AlreadyCheckedIn):
        box.append(meeting="M", member="A", proof=PROOF, time_reading=TIME)
    assert box.depth() == 1 and box.head()[0] == 1


def test_ack_deletes_only_what_it_covers_and_checks_the_hash(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", signing_key=SigningKey.generate())
    recs = [box.append(meeting="M", member=m, proof=PROOF, time_reading=TIME) for m in "ABC"]
    assert box.acknowledge(2, "f" * 64) == 0  # wrong hash: a fork, keep everything
    assert box.depth() == 3
    assert box.acknowledge(9, recs[2].hash) == 0  # beyond our head
    assert box.acknowledge(2, recs[1].hash) == 2
    assert [q.seq for q in box.after(0, 10)] == [3] and box.acked_seq() == 2


def test_committed_record_survives_a_killed_process(tmp_path):
    """A record whose append returned is on disk even if the process dies right after (SIGKILL)."""
    key = SigningKey.generate()
    script = textwrap.dedent(f"""
        import os, signal
        from nacl.signing import SigningKey
        from contract import DeviceTime, Proof
        from edge_agent.outbox import Outbox
        box = Outbox({str(tmp_path / 'o.sqlite3')!r}, signing_key=SigningKey({bytes(key)!r}))
        for i in range(5):
            box.append(meeting="M", member=str(i), proof=Proof(card_kind="member_card"),
                       time_reading=DeviceTime(wall="2026-11-25T01:00:00.000Z", synced=True, boot_id="b", monotonic=1.0))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9, proc.stderr
    box = Outbox(tmp_path / "o.sqlite3", signing_key=key)
    assert box.depth() == 5 and box.head()[0] == 5


def test_full_outbox_refuses_new_checkins_and_keeps_queued_ones(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", signing_key=SigningKey.generate(), max_pages=12)
    stored = 0
    with pytest.raises(DiskFullError):
        for i in range(10_000):
            box.append(meeting="M", member=f"member-{i}", proof=PROOF, time_reading=TIME)
            stored += 1
    assert stored > 0
    assert box.depth() == stored and box.head()[0] == stored
    assert [q.seq for q in box.after(0, stored + 5)] == list(range(1, stored + 1))


def test_low_free_space_refuses_before_writing(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", signing_key=SigningKey.generate(), min_free_bytes=1 << 62)
    with pytest.raises(DiskFullError, match="free"):
        box.append(meeting="M", member="A", proof=PROOF, time_reading=TIME)
    assert box.depth() == 0


def _mode(path) -> int:
    return path.stat().st_mode & 0o777


def test_the_kiosks_data_dir_and_outbox_are_private(tmp_path):
    """Queued check-ins name members: the data dir is 0700 and the outbox files 0600, also when they were looser."""
    data_dir = tmp_path / "agent"
    box = Outbox(data_dir / "outbox.sqlite3", signing_key=SigningKey.generate())
    box.append(meeting="M", member="A", proof=PROOF, time_reading=TIME)
    files = [data_dir / "outbox.sqlite3", data_dir / "outbox.sqlite3-wal", data_dir / "outbox.sqlite3-shm"]
    assert _mode(data_dir) == 0o700
    assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    box.close()
    data_dir.chmod(0o755)  # as an older kiosk left them
    for f in data_dir.iterdir():
        f.chmod(0o644)
    again = Outbox(data_dir / "outbox.sqlite3", signing_key=SigningKey.generate())
    again.depth()
    assert _mode(data_dir) == 0o700
    assert {f.name: _mode(f) for f in data_dir.iterdir()} == {f.name: 0o600 for f in data_dir.iterdir()}
    again.close()
