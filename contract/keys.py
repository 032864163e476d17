"""Ed25519 keys, device ids and signed envelopes.

A device id is derived from the device's public key, so nobody can claim an id
without holding the matching private key. Every message central sends to a
device (ack, bundle) and every record a device sends is a JSON object whose
``sig`` field is an Ed25519 signature over the canonical JSON of all the rest.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .canonical import canonical_bytes
from .errors import SignatureError

DEVICE_ID_HEX_CHARS = 32  # 128 bits of the key's SHA-256: collisions are not a concern


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"not base64url: {exc}") from exc


def device_id_from_public_key(public_key: bytes | VerifyKey) -> str:
    raw = bytes(public_key)
    if len(raw) != 32:
        raise SignatureError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return "d" + hashlib.sha256(raw).hexdigest()[:DEVICE_ID_HEX_CHARS]


def public_key_text(key: SigningKey | VerifyKey) -> str:
    verify = key.verify_key if isinstance(key, SigningKey) else key
    return b64e(bytes(verify))


def verify_key_from_text(text: str) -> VerifyKey:
    raw = b64d(text)
    if len(raw) != 32:
        raise SignatureError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return VerifyKey(raw)


def sign_object(key: SigningKey, body: dict[str, Any]) -> dict[str, Any]:
    """Return ``body`` plus ``sig``; ``body`` must not already carry one."""
    if "sig" in body:
        raise ValueError("object is already signed")
    signature = key.sign(canonical_bytes(body)).signature
    return {**body, "sig": b64e(signature)}


def verify_object(key: VerifyKey, signed: dict[str, Any]) -> dict[str, Any]:
    """Check ``signed['sig']`` over the rest; return the rest, or raise SignatureError."""
    sig = signed.get("sig")
    if not isinstance(sig, str):
        raise SignatureError("no signature")
    body = {k: v for k, v in signed.items() if k != "sig"}
    raw = b64d(sig)
    if len(raw) != 64:
        raise SignatureError("an Ed25519 signature is 64 bytes")
    try:
        key.verify(canonical_bytes(body), raw)
    except BadSignatureError as exc:
        raise SignatureError("signature does not verify") from exc
    return body
