"""One-time enrolment tokens, and redeeming one for a kiosk's registration and certificate.

Staff make a token for a hall (``hall central token create --hall H``); it is
shown once and only its SHA-256 is stored (a token is 192 random bits, so a
slow hash would add nothing). A kiosk redeems it once, before it expires, by
sending its Ed25519 public key, a CSR for its TLS key (CN = its device id) and
an Ed25519 signature over the CSR made with the device key: so nobody can get a
certificate for a device id without holding that device's private key.

Redemption is one transaction: the device is registered in the token's hall,
its certificate recorded and the token marked used, or nothing changes (a
refused attempt does not burn the token; the refusal is kept in ``rejections``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from contract import device_id_from_public_key, public_key_text, verify_key_from_text, verify_object
from contract.errors import ContractError

from . import registry
from .enrol_limits import DEFAULT_BURST, DEFAULT_PER_MINUTE, SourceLimiter
from .errors import CentralError, RegistryError
from .pki import CentralPki, CsrRefused, IssuedCertificate
from .store import Store

TOKEN_BYTES = 24
DEFAULT_TTL = timedelta(hours=24)
MAX_TTL = timedelta(days=30)
PROOF_PURPOSE = "hall-enrol-v1"
TTL_RE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
TTL_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class EnrolRefused(CentralError, PermissionError):
    """A kiosk's enrolment is refused; ``reason`` says why in words staff and technicians understand."""

    def __init__(self, reason: str, *, status: int = 403, device: str | None = None):
        super().__init__(reason)
        self.reason, self.status, self.device = reason, status, device


def token_hash(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def parse_ttl(text: str) -> timedelta:
    """'90m', '24h', '7d' -> timedelta; refuses zero, other units and more than MAX_TTL."""
    m = TTL_RE.match(text or "")
    if not m:
        raise RegistryError(f"bad time to live {text!r}: a number and a unit s, m, h or d, e.g. 24h")
    ttl = timedelta(**{TTL_UNITS[m.group(2)]: int(m.group(1))})
    if ttl <= timedelta(0) or ttl > MAX_TTL:
        raise RegistryError(f"time to live {text!r} must be more than 0 and at most {MAX_TTL.days} days")
    return ttl


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once; never stored
    hall: str
    expires_at: str
    position: str | None = None  # where in the hall the kiosk stands: its name is the hall's + this


def create_token(store: Store, hall: str, ttl: timedelta = DEFAULT_TTL, *, position: str | None = None,
                 now: datetime | None = None) -> IssuedToken:
    """A new one-time token for ``hall``, which must exist (a typo would otherwise make a phantom hall); the kiosk
    that redeems it is named after the hall and ``position`` ("cửa chính")."""
    hall = registry.check_id("hall", hall)
    position = registry.check_name("position", position) if position is not None else None
    if ttl <= timedelta(0) or ttl > MAX_TTL:
        raise RegistryError(f"a token lives more than 0 and at most {MAX_TTL.days} days")
    if store.scalar("SELECT 1 FROM halls WHERE id = ?", [hall]) is None:
        raise RegistryError(f"no hall {hall!r}: add it first with `hall central hall {hall} --name ...`")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    created = _utc(now)
    expires = _iso(created + ttl)
    with store.transaction() as db:
        db.execute(
            "INSERT INTO enrol_tokens (token_sha256, hall, created_at, expires_at, position) VALUES (?, ?, ?, ?, ?)",
            [token_hash(token), hall, _iso(created), expires, position],
        )
    return IssuedToken(token, hall, expires, position)


def list_tokens(store: Store) -> list[dict[str, Any]]:
    """Tokens without their secret: id, hall, position, created, expires, used (when, by which device)."""
    return store.rows("SELECT id, hall, position, created_at, expires_at, used_at, used_by FROM enrol_tokens ORDER BY id")


def check_token(store: Store, token: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The token's row if it may be redeemed now; EnrolRefused (unknown, used, expired) otherwise."""
    row = store.row("SELECT * FROM enrol_tokens WHERE token_sha256 = ?", [token_hash(token or "")])
    if row is None:
        raise EnrolRefused("unknown enrolment token (mistyped, or never issued by this central)")
    if row["used_at"]:
        raise EnrolRefused(f"enrolment token {row['id']} was already used on {row['used_at']} by device {row['used_by']}; "
                           "ask staff for a new one")
    if row["expires_at"] <= _iso(_utc(now)):
        raise EnrolRefused(f"enrolment token {row['id']} expired at {row['expires_at']}; ask staff for a new one")
    return row


def check_proof(public_key: str, csr_pem: str, proof: str) -> str:
    """The device id, if ``proof`` is the device key's signature over this CSR; EnrolRefused otherwise."""
    try:
        verify_key = verify_key_from_text((public_key or "").strip())
        device_id = device_id_from_public_key(verify_key)
    except ContractError as exc:
        raise EnrolRefused(f"bad device public key: {exc}", status=400) from None
    body = {"purpose": PROOF_PURPOSE, "csr_sha256": hashlib.sha256(csr_pem.encode()).hexdigest()}
    try:
        verify_object(verify_key, {**body, "sig": proof or ""})
    except ContractError:
        raise EnrolRefused(f"the request is not signed by device {device_id}'s key (proof of possession fails)",
                           status=400, device=device_id) from None
    return device_id


@dataclass(frozen=True)
class Enrolled:
    device: str
    hall: str
    certificate: IssuedCertificate


def redeem(store: Store, pki: CentralPki, *, token: str, public_key: str, csr_pem: str, proof: str,
           now: datetime | None = None, cert_days: int | None = None) -> Enrolled:
    """Register the device in the token's hall, issue its certificate and use up the token — all or nothing."""
    device_id = check_proof(public_key, csr_pem, proof)
    try:
        csr = pki.check_csr(csr_pem, device_id)
    except CsrRefused as exc:
        raise EnrolRefused(str(exc), status=400, device=device_id) from None
    with store.transaction() as db:
        try:
            row = check_token(store, token, now=now)
        except EnrolRefused as exc:
            raise EnrolRefused(exc.reason, status=exc.status, device=device_id) from None
        try:
            registry.add_device(store, public_key, row["hall"], position=row["position"])
        except RegistryError as exc:
            raise EnrolRefused(str(exc), status=409, device=device_id) from None
        kw = {"days": cert_days} if cert_days else {}
        issued = pki.sign_device_csr(store, csr, device_id, **kw)
        # The WHERE re-checks under the write lock: two kiosks racing with one token cannot both win.
        used = db.execute(
            "UPDATE enrol_tokens SET used_at = ?, used_by = ? WHERE id = ? AND used_at IS NULL",
            [_iso(_utc(now)), device_id, row["id"]],
        ).rowcount
        if used != 1:
            raise EnrolRefused(f"enrolment token {row['id']} was used by another device a moment ago", device=device_id)
    return Enrolled(device_id, row["hall"], issued)


# Where `hall central broker-config` was told kiosks reach the broker (its --host names are the
# broker certificate's names, so they are the ones a kiosk can verify).
BROKER_HOST_KEY, BROKER_PORT_KEY = "enrol_broker_host", "enrol_broker_port"
DEFAULT_BROKER = ("127.0.0.1", 8883)


def save_broker_address(store: Store, host: str | None, port: int) -> None:
    with store.transaction() as db:
        for key, value in ((BROKER_HOST_KEY, host), (BROKER_PORT_KEY, str(port))):
            if value is None:
                db.execute("DELETE FROM meta WHERE key = ?", [key])
            else:
                db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           [key, value])


def broker_address(store: Store, host: str | None = None, port: int | None = None) -> tuple[str, int]:
    """The broker address for kiosks: ``host``/``port`` when set explicitly, else what broker-config saved."""
    saved_host = store.scalar("SELECT value FROM meta WHERE key = ?", [BROKER_HOST_KEY])
    saved_port = store.scalar("SELECT value FROM meta WHERE key = ?", [BROKER_PORT_KEY])
    return (host or saved_host or DEFAULT_BROKER[0],
            port or (int(saved_port) if saved_port else DEFAULT_BROKER[1]))


@dataclass(frozen=True)
class EnrolmentConfig:
    """What central tells an enrolling kiosk besides its certificate; set on ``app.state.enrolment``."""

    pki: CentralPki
    signing_key: SigningKey  # central's Ed25519 key: it signs the answer, and the CA vouches for it
    broker_host: str | None  # None: what `hall central broker-config --host` saved (see broker_address)
    broker_port: int | None
    topic_prefix: str
    agent_config: dict[str, str] = field(default_factory=dict)  # extra HALL_AGENT_* settings for every kiosk
    cert_days: int | None = None
    broker_dir: Path | None = None  # from `hall central broker-config`: its ACL is rewritten and the broker reloaded
    limiter: SourceLimiter = field(default_factory=lambda: SourceLimiter(per_minute=DEFAULT_PER_MINUTE, burst=DEFAULT_BURST))

    @property
    def central_public_key(self) -> str:
        return public_key_text(self.signing_key)
