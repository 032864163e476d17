"""Central's data directory and database are central's alone: directories 0700, files 0600.

The database holds members' names, ID numbers and card UIDs, the audit log and account
hashes; nothing in the data directory is for other users to read or list.
"""

from __future__ import annotations

import os
from pathlib import Path

# <data_dir>/broker (central/cli_provisioning.py BROKER_DIR): a Mosquitto started as root drops to its
# own user and must pass through the data directory to read these files, so a search bit given for
# that is kept when they live here; read and write bits are never kept.
BROKER_DIR = "broker"
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if missing and make it 0700 (see BROKER_DIR for the one exception)."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = 0o700
    if (path / BROKER_DIR).is_dir():
        mode |= path.stat().st_mode & 0o011
    if path.stat().st_mode & 0o777 != mode:
        os.chmod(path, mode)


def private_database(path: Path) -> None:
    """Make the SQLite file at ``path`` 0600 before SQLite opens it, and its -wal/-shm as they are.

    SQLite creates the -wal and -shm files with the database file's mode, so a 0600 database keeps
    them private; files an older version left looser are tightened here.
    """
    path = Path(path)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for suffix in SQLITE_SUFFIXES:
        side = path.with_name(path.name + suffix)
        try:
            if side.stat().st_mode & 0o777 != 0o600:
                os.chmod(side, 0o600)
        except FileNotFoundError:
            pass
