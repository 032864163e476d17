"""The device's keys: made on the device, kept in 0600 files, never sent anywhere.

Only the public half leaves (in enrolment); the device id is derived from it.
"""

from __future__ import annotations

import os
from pathlib import Path

import nacl.utils
from nacl.secret import SecretBox
from nacl.signing import SigningKey

from contract import device_id_from_public_key, public_key_text

SIGNING_KEY_FILE = "device.key"
STORAGE_KEY_FILE = "storage.key"


def write_file_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` with ``mode`` from the first byte (keys are never briefly world-readable),
    fsync, then rename into place, so a power cut leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by the umask, and ignored for an existing tmp
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _load_or_create(path: Path, size: int) -> bytes:
    if path.exists():
        data = path.read_bytes()
        if len(data) != size:
            raise ValueError(f"{path} is {len(data)} bytes, expected {size}: refusing to overwrite a key")
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return data
    data = nacl.utils.random(size)
    write_file_atomically(path, data)
    return data


class DeviceIdentity:
    def __init__(self, data_dir: Path):
        self.signing_key = SigningKey(_load_or_create(Path(data_dir) / SIGNING_KEY_FILE, 32))
        # A separate key for data at rest (roster bundle), so the signing key is
        # used for one purpose only.
        self.storage_box = SecretBox(_load_or_create(Path(data_dir) / STORAGE_KEY_FILE, SecretBox.KEY_SIZE))
        self.device_id = device_id_from_public_key(self.signing_key.verify_key)
        self.public_key = public_key_text(self.signing_key)
