"""Canonical bytes and hashes: what gets signed and chained.

RFC 8785 (JSON Canonicalization Scheme) makes the signed bytes independent of
key order and float formatting, so the device (Python) and any other verifier
(PostgreSQL job, auditor's script) compute the same bytes.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

GENESIS_HASH = "0" * 64


def canonical_bytes(obj: Any) -> bytes:
    return rfc8785.dumps(obj)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
