"""Central's certificate authority: the broker's TLS certificate, central's and the kiosks' client certificates.

Everything lives in ``<central data_dir>/pki``: the CA key (0600, made once,
never leaves central), the CA certificate the kiosks and the broker trust, the
broker's server certificate, central's own client certificate (CN ``central``)
and the certificate revocation list. A kiosk's certificate is signed from a
certificate signing request made on the kiosk, so its TLS key never leaves it;
its common name is the device id, which the broker takes as the MQTT username
(``use_identity_as_username``), so the ACL can bind each device to its own topics.

Keys are ECDSA P-256: every TLS stack the kiosks, the broker and browsers use speaks it.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import CentralError, KeyFileError
from .store import Store, utc_now

PKI_DIR = "pki"
CA_KEY, CA_CERT, CRL = "ca.key", "ca.crt", "crl.pem"
BROKER_KEY, BROKER_CERT = "broker.key", "broker.crt"
CENTRAL_KEY, CENTRAL_CERT = "central.key", "central.crt"
ENROL_KEY, ENROL_CERT = "enrol.key", "enrol.crt"
SIGNING_CERT = "central-signing.crt"
CENTRAL_CN = "central"  # the broker's ACL grants central's rights to this username
ENROL_CN = "hall-central-enrol"
# The certificate that vouches for central's Ed25519 key (acks, bundles, enrolment answers). Device
# certificates can never carry this name: check_csr allows only the device id as common name.
SIGNING_CN = "hall-central-signing"
CA_DAYS = 20 * 365
SERVER_DAYS = 5 * 365
# Renewal is not automated yet: an expired certificate takes a kiosk off the network, so be generous.
DEVICE_DAYS = 5 * 365
# OpenSSL refuses every client once the CRL's nextUpdate has passed; it is rewritten on every revocation
# and by `hall central broker-config`, so a long horizon costs nothing and avoids a fleet-wide outage.
CRL_DAYS = 10 * 365
CLOCK_SKEW = timedelta(minutes=5)  # a kiosk whose clock is slightly behind must still accept new certificates
LOCAL_HOSTS = ("localhost", "127.0.0.1")

class PkiError(CentralError, ValueError):
    """A certificate request is refused or a PKI file is unusable."""


class CsrRefused(PkiError):
    """A kiosk's certificate signing request does not name the submitted device or is malformed."""


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate (DER), as colon-separated hex: what a technician compares by eye."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def _now() -> datetime:
    return datetime.now(UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and path.name == CA_KEY:
        raise KeyFileError(f"{path} is readable by other users (mode {oct(mode & 0o777)}); chmod 600 it")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path} does not hold an EC private key")
    return key


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(h.strip() for h in hosts if h.strip()):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


@dataclass(frozen=True)
class IssuedCertificate:
    serial: str  # hex
    device: str
    pem: bytes
    not_after: datetime


class CentralPki:
    """The CA and the certificates it issues, under ``directory`` (usually ``<data_dir>/pki``)."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.ca_key_path, self.ca_cert_path, self.crl_path = self.dir / CA_KEY, self.dir / CA_CERT, self.dir / CRL
        self.broker_key_path, self.broker_cert_path = self.dir / BROKER_KEY, self.dir / BROKER_CERT
        self.central_key_path, self.central_cert_path = self.dir / CENTRAL_KEY, self.dir / CENTRAL_CERT

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> CentralPki:
        return cls(Path(data_dir) / PKI_DIR)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Two processes (the service and a CLI) must not each make a different CA.
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        with open(self.dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- the CA ---------------------------------------------------------------------

    def ensure_ca(self, name: str = "Hall central CA") -> None:
        """Make the CA key and certificate on first use; later calls only check they are there."""
        if self.ca_key_path.exists() and self.ca_cert_path.exists():
            return
        with self._locked():
            if self.ca_key_path.exists() and self.ca_cert_path.exists():
                return
            if self.ca_key_path.exists() or self.ca_cert_path.exists():
                raise KeyFileError(f"{self.dir} holds only half of the CA (key or certificate); restore the other half from backup")
            key = ec.generate_private_key(ec.SECP256R1())
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
            ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
            cert = (
                x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(_now() - CLOCK_SKEW).not_valid_after(_now() + timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(ski, critical=False)
                .sign(key, hashes.SHA256())
            )
            _write(self.ca_key_path, _key_pem(key), 0o600)
            _write(self.ca_cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def _ca(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        self.ensure_ca()
        return _load_key(self.ca_key_path), x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())

    def ca_pem(self) -> bytes:
        self.ensure_ca()
        return self.ca_cert_path.read_bytes()

    def ca_fingerprint(self) -> str:
        return fingerprint(self.ca_pem())

    def _issue(self, subject_cn: str, public_key: object, *, days: int, usage: x509.ObjectIdentifier,
               san: x509.SubjectAlternativeName | None = None) -> x509.Certificate:
        ca_key, ca_cert = self._ca()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
            .issuer_name(ca_cert.subject).public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - CLOCK_SKEW).not_valid_after(_now() + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    # -- central's own certificates -------------------------------------------------------

    def issue_broker_certificate(self, hosts: Iterable[str] = ()) -> tuple[Path, Path]:
        """The broker's server certificate, valid for 127.0.0.1, localhost and ``hosts`` (the names kiosks dial)."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._issue("hall-broker", key.public_key(), days=SERVER_DAYS, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                           san=_san([*LOCAL_HOSTS, *hosts]))
        _write(self.broker_key_path, _key_pem(key), 0o600)
        _write(self.broker_cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return self.broker_cert_path, self.broker_key_path

    def ensure_enrol_certificate(self, hosts: Iterable[str] = ()) -> tuple[Path, Path]:
        """The HTTPS enrolment listener's server certificate; kiosks verify it against the CA they pinned."""
        cert_path, key_path = self.dir / ENROL_CERT, self.dir / ENROL_KEY
        wanted = _san([*LOCAL_HOSTS, *hosts])
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == wanted:
                return cert_path, key_path
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._issue(ENROL_CN, key.public_key(), days=SERVER_DAYS, usage=ExtendedKeyUsageOID.SERVER_AUTH, san=wanted)
        _write(key_path, _key_pem(key), 0o600)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return cert_path, key_path

    def signing_key_certificate(self, public_key: bytes) -> bytes:
        """PEM certificate, from the CA, for central's Ed25519 public key (32 raw bytes).

        A kiosk that pinned the CA learns central's signing key from it: so the key an enrolment
        answer is signed with, and which the kiosk then trusts for acks and bundles, cannot be
        swapped by anyone between the two.
        """
        path = self.dir / SIGNING_CERT
        if path.exists():
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            held = cert.public_key()
            ca = x509.load_pem_x509_certificate(self.ca_pem())
            if (isinstance(held, ed25519.Ed25519PublicKey)
                    and held.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == public_key
                    and cert.issuer == ca.subject and cert.not_valid_after_utc > _now() + timedelta(days=30)):
                try:
                    cert.verify_directly_issued_by(ca)
                    return path.read_bytes()
                except (ValueError, TypeError, InvalidSignature):
                    pass
        cert = self._issue(SIGNING_CN, ed25519.Ed25519PublicKey.from_public_bytes(public_key), days=SERVER_DAYS,
                           usage=ExtendedKeyUsageOID.CODE_SIGNING)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        _write(path, pem, 0o644)
        return pem

    def ensure_central_certificate(self) -> tuple[Path, Path]:
        """Central's client certificate (CN ``central``): the collector's identity at the broker."""
        if not (self.central_key_path.exists() and self.central_cert_path.exists()):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = self._issue(CENTRAL_CN, key.public_key(), days=SERVER_DAYS, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
            _write(self.central_key_path, _key_pem(key), 0o600)
            _write(self.central_cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return self.central_cert_path, self.central_key_path

    # -- kiosks ------------------------------------------------------------------------

    def check_csr(self, csr_pem: bytes | str, device_id: str) -> x509.CertificateSigningRequest:
        """The parsed CSR, or CsrRefused if it is malformed, badly signed or names anyone but ``device_id``."""
        data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
        try:
            csr = x509.load_pem_x509_csr(data)
        except ValueError as exc:
            raise CsrRefused(f"the certificate request is not a PEM CSR: {exc}") from None
        try:
            signed_ok = csr.is_signature_valid
        except (InvalidSignature, ValueError):
            signed_ok = False
        if not signed_ok:
            raise CsrRefused("the certificate request's signature does not verify")
        key = csr.public_key()
        if not (isinstance(key, ed25519.Ed25519PublicKey)
                or (isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in ("secp256r1", "secp384r1"))):
            raise CsrRefused(f"the certificate request's key type ({type(key).__name__}) is not EC P-256/P-384 or Ed25519")
        attrs = list(csr.subject)
        names = [a.value for a in attrs if a.oid == NameOID.COMMON_NAME]
        if len(attrs) != 1 or len(names) != 1:
            raise CsrRefused(f"the certificate request's subject must be exactly CN=<device id>, not {csr.subject.rfc4514_string()!r}")
        if names[0] != device_id:
            raise CsrRefused(f"the certificate request is for {names[0]!r}, but the submitted key is device {device_id}")
        return csr

    def sign_device_csr(self, store: Store, csr: x509.CertificateSigningRequest, device_id: str,
                        *, days: int = DEVICE_DAYS) -> IssuedCertificate:
        """Issue a kiosk's client certificate (CN = device id) and record it, in the caller's transaction.

        The device's earlier certificates are revoked: after re-enrolment only the new TLS key gets in,
        so a copy of the old key (from a swapped or cloned SD card) is worthless once the CRL is out.
        """
        cert = self._issue(device_id, csr.public_key(), days=days, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        serial = format(cert.serial_number, "x")
        with store.transaction() as db:
            db.execute("UPDATE device_certificates SET revoked_at = ? WHERE device = ? AND revoked_at IS NULL",
                       [utc_now(), device_id])
            db.execute(
                "INSERT INTO device_certificates (serial, device, issued_at, not_after, certificate) VALUES (?, ?, ?, ?, ?)",
                [serial, device_id, utc_now(), cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"), pem.decode()],
            )
        return IssuedCertificate(serial, device_id, pem, cert.not_valid_after_utc)

    # -- revocation ----------------------------------------------------------------------

    def revoked_serials(self, store: Store) -> list[tuple[int, datetime]]:
        """(serial, revocation time) of every certificate issued to a revoked device or replaced by re-enrolment."""
        out = []
        for r in store.rows(
            "SELECT c.serial, COALESCE(c.revoked_at, d.revoked_at) AS revoked_at "
            "FROM device_certificates c JOIN devices d ON d.id = c.device "
            "WHERE c.revoked_at IS NOT NULL OR d.revoked_at IS NOT NULL ORDER BY c.serial"
        ):
            when = datetime.fromisoformat(r["revoked_at"].replace("Z", "+00:00"))
            out.append((int(r["serial"], 16), when))
        return out

    def write_crl(self, store: Store, path: Path | None = None) -> Path:
        """Write the CRL (PEM) listing every revoked device's certificates; returns its path."""
        ca_key, ca_cert = self._ca()
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
            .last_update(now - CLOCK_SKEW).next_update(now + timedelta(days=CRL_DAYS))
            # A CRL number that only grows lets a reader tell the newest CRL from an older copy.
            .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        for serial, when in self.revoked_serials(store):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        crl = builder.sign(ca_key, hashes.SHA256())
        target = Path(path) if path else self.crl_path
        _write(target, crl.public_bytes(serialization.Encoding.PEM), 0o644)
        return target
