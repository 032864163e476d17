"""Central's keys, each a 0600 file in the data directory, made on first use.

- the Ed25519 signing key: acks and bundles are signed with it; kiosks hold its
  public half (``hall central key``) from provisioning;
- the template key: a libsodium SecretBox key, so the face templates in the
  database are encrypted at rest and a copied database file reveals no biometrics.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nacl.secret import SecretBox
from nacl.signing import SigningKey
from nacl.utils import random

from contract import public_key_text

from .errors import KeyFileError
from .settings import CentralSettings

SIGNING_KEY_FILE = "central_signing.key"
TEMPLATE_KEY_FILE = "templates.key"
KEY_BYTES = 32


def _load_or_create(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once must not each write a different key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    secret = random(KEY_BYTES)
    try:
        os.write(fd, secret)
        os.fsync(fd)
    finally:
        os.close(fd)
    return secret


def _read(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by other users (mode {oct(mode & 0o777)}); chmod 600 it")
    data = path.read_bytes()
    if len(data) != KEY_BYTES:
        raise KeyFileError(f"{path} holds {len(data)} bytes, a key is {KEY_BYTES}")
    return data


def signing_key(data_dir: Path) -> SigningKey:
    return SigningKey(_load_or_create(Path(data_dir) / SIGNING_KEY_FILE))


def template_box(data_dir: Path) -> SecretBox:
    return SecretBox(_load_or_create(Path(data_dir) / TEMPLATE_KEY_FILE))


def central_public_key(settings: CentralSettings) -> str:
    """Central's public key as text (base64url), for the kiosks' `central_public_key` setting."""
    return public_key_text(signing_key(settings.data_dir))
