"""Central's data directory and database are private to central's user: 0700 and 0600."""

from __future__ import annotations

from central import registry
from central.store import open_store


def _mode(path) -> int:
    return path.stat().st_mode & 0o777


def _db_files(data_dir):
    return [data_dir / name for name in ("central.db", "central.db-wal", "central.db-shm")]


def test_a_new_data_dir_and_database_are_private(tmp_path):
    data_dir = tmp_path / "central"
    with open_store(data_dir) as store:
        registry.add_member(store, "m1", "Nguyễn Văn A", "C1", cccd="001099012345")
        assert _mode(data_dir) == 0o700
        assert {f.name: _mode(f) for f in _db_files(data_dir)} == {f.name: 0o600 for f in _db_files(data_dir)}


def test_an_existing_world_readable_data_dir_is_made_private_on_open(tmp_path):
    data_dir = tmp_path / "central"
    with open_store(data_dir) as store:
        registry.add_member(store, "m1", "Nguyễn Văn A", "C1")
    data_dir.chmod(0o755)  # as an earlier version left them
    for f in data_dir.iterdir():
        f.chmod(0o644)
    with open_store(data_dir) as store:
        registry.add_member(store, "m2", "Trần Thị B", "C1")
        assert _mode(data_dir) == 0o700
        assert {f.name: _mode(f) for f in data_dir.iterdir() if f.name.startswith("central.db")} == {
            f.name: 0o600 for f in _db_files(data_dir)}


def test_a_data_dir_holding_the_brokers_files_keeps_only_the_passage_to_them(tmp_path):
    """A root-started Mosquitto runs as its own user and must pass through to <data_dir>/broker:
    an existing search bit stays there; reading and listing go, as everywhere else."""
    data_dir = tmp_path / "central"
    (data_dir / "broker").mkdir(parents=True)
    data_dir.chmod(0o775)
    with open_store(data_dir):
        assert _mode(data_dir) == 0o711
    (data_dir / "broker").rmdir()
    data_dir.chmod(0o775)
    with open_store(data_dir):
        assert _mode(data_dir) == 0o700
