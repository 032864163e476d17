"""Enrolling a kiosk with central: keys made here, a token redeemed there, configuration written here.

The device's Ed25519 key (edge_agent.identity) and its TLS key are made on the
device and never leave it; central receives the public key, a CSR for the TLS
key (CN = device id) and the device key's signature over that CSR. Central
answers with the client certificate, its CA certificate, the broker's address,
the hall, its own Ed25519 public key and the agent's settings, which are written
as ``HALL_AGENT_*`` lines into ``<data_dir>/agent.env`` (0600; systemd's
``EnvironmentFile=``). That file is written last: its presence means "enrolled".

Nobody between the kiosk and central can read the token or change the answer
(docs/DESIGN.md, "Enrolment"): the technician types the CA's fingerprint; the
kiosk fetches the CA and compares before the token leaves it; the token then
travels only over TLS whose server certificate chains to that CA; and the whole
answer must carry central's signature, by a key the CA certified.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from nacl.signing import VerifyKey
from pydantic import ValidationError

from contract import public_key_text, sign_object, verify_object
from contract.errors import ContractError
from edge_agent.identity import DeviceIdentity, write_file_atomically
from edge_agent.settings import AgentSettings

from . import (
    CA_CERT_FILE,
    ENV_FILE,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    AlreadyEnrolled,
    EnrolRefused,
    ProvisioningError,
)

PREFIX = "HALL_AGENT_"
PROOF_PURPOSE = "hall-enrol-v1"  # must match central.enrol_tokens.PROOF_PURPOSE
ANSWER_PURPOSE = "hall-enrol-answer-v1"  # must match central.enrol_answer.ANSWER_PURPOSE
SIGNING_CN = "hall-central-signing"  # must match central.pki.SIGNING_CN
MAX_ANSWER = 256 * 1024  # central's answer is a few KiB: anything far larger is not central
FINGERPRINT_RE = re.compile(r"^[0-9a-f]{2}(?::?[0-9a-f]{2}){31}$", re.IGNORECASE)
# Settings the agent will gain for its TLS connection; written now, read by the agent once it knows them.
TLS_FIELDS = ("mqtt_tls_ca", "mqtt_tls_cert", "mqtt_tls_key")
# Decided on the device, never by central: where the data lives and who may see the kiosk page.
LOCAL_ONLY = {"data_dir", "http_host", "http_port"}
SAFE_VALUE = re.compile(r"^[^\x00-\x1f\"'\\`$]*$")


@dataclass(frozen=True)
class TlsPaths:
    ca: Path
    cert: Path
    key: Path

    def exist(self) -> bool:
        return self.ca.is_file() and self.cert.is_file() and self.key.is_file()


def tls_paths(settings: AgentSettings) -> TlsPaths:
    """The agent's TLS files: its settings if it has the fields, else the files enrolment writes."""
    data = Path(settings.data_dir)
    ca, cert, key = (getattr(settings, name, None) for name in TLS_FIELDS)
    return TlsPaths(Path(ca or data / CA_CERT_FILE), Path(cert or data / TLS_CERT_FILE), Path(key or data / TLS_KEY_FILE))


# -- the env file -------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines (comments and blank lines skipped; optional double quotes removed)."""
    out: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        out[key.strip()] = value
    return out


def write_env_file(path: Path, values: Mapping[str, str], header: str = "") -> None:
    lines = [f"# {h}" for h in header.splitlines()]
    for key, value in values.items():
        if not SAFE_VALUE.match(value):
            raise ProvisioningError(f"refusing to write {key}: its value holds quotes, $, backslashes or control characters")
        lines.append(f"{key}={value}")
    write_file_atomically(Path(path), ("\n".join(lines) + "\n").encode(), 0o600)


def default_data_dir() -> Path:
    return Path(AgentSettings().data_dir)


def load_agent_settings(data_dir: Path | None = None) -> AgentSettings:
    """AgentSettings from ``<data_dir>/agent.env`` with the process environment taking precedence
    (as systemd's ``Environment=`` overrides its ``EnvironmentFile=``)."""
    data = Path(data_dir) if data_dir else default_data_dir()
    env_file = data / ENV_FILE
    file_values = read_env_file(env_file) if env_file.is_file() else {}
    fields = AgentSettings.model_fields
    kwargs: dict[str, Any] = {"data_dir": data}
    for key, value in file_values.items():
        name = key[len(PREFIX):].lower() if key.startswith(PREFIX) else ""
        if name in fields and name != "data_dir" and key not in os.environ:
            kwargs[name] = value
    try:
        return AgentSettings(**kwargs)
    except ValidationError as exc:
        raise ProvisioningError(f"bad agent setting in {env_file} or HALL_AGENT_*: {exc}") from None


def is_enrolled(data_dir: Path) -> bool:
    return (Path(data_dir) / ENV_FILE).is_file()


# -- keys and the request ------------------------------------------------------------------


def make_tls_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def build_csr(key: ec.EllipticCurvePrivateKey, device_id: str) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def proof_of_possession(identity: DeviceIdentity, csr_pem: str) -> str:
    body = {"purpose": PROOF_PURPOSE, "csr_sha256": hashlib.sha256(csr_pem.encode()).hexdigest()}
    return sign_object(identity.signing_key, body)["sig"]


def parse_fingerprint(text: str | None) -> str:
    """The CA fingerprint as 64 lower-case hex digits; ProvisioningError, before any network, if it is not one."""
    value = (text or "").strip()
    if not FINGERPRINT_RE.match(value):
        raise ProvisioningError(
            f"--ca-fingerprint {value!r} is not a SHA-256 fingerprint: it is 64 hex digits, optionally in pairs "
            "separated by colons, exactly as `hall central token create` prints it; nothing was sent")
    return value.replace(":", "").lower()


def check_central_url(url: str) -> str:
    """Central's base URL without a trailing slash; only https:// is accepted."""
    parts = urlsplit((url or "").strip())
    if parts.scheme.lower() == "http":
        raise ProvisioningError(
            f"refusing {url}: enrolment goes over https:// only, so that nobody on the network can read the token "
            "or change central's answer; use https://HOST:PORT (central's HALL_CENTRAL_ENROL_PORT); nothing was sent")
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise ProvisioningError(f"--central {url!r} is not an https:// address, e.g. https://central.example.vn:8443")
    return url.strip().rstrip("/")


def _fingerprint_hex(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def pinned_tls(ca: x509.Certificate) -> ssl.SSLContext:
    """TLS that trusts only central's CA. Host names are not checked: that CA is central's own and
    issues server certificates only to central's services, so a chain to it (for a server, which
    OpenSSL checks by the certificate's extended key usage) already says "this is central",
    whichever name or address the technician typed."""
    ctx = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _json_at_most(resp: httpx.Response, url: str) -> Any:
    body = bytearray()
    for chunk in resp.iter_bytes():
        body += chunk
        if len(body) > MAX_ANSWER:
            raise ProvisioningError(f"{url} sent more than {MAX_ANSWER} bytes: that is not central's answer; nothing was written")
    try:
        return httpx.Response(resp.status_code, content=bytes(body)).json()
    except ValueError:
        if resp.status_code != 200:
            raise EnrolRefused(bytes(body[:300]).decode("utf-8", "replace") or resp.reason_phrase, resp.status_code) from None
        raise ProvisioningError(f"central at {url} answered with something other than JSON") from None


def fetch_ca(base: str, fingerprint_hex: str, timeout: float) -> x509.Certificate:
    """Central's CA, if its fingerprint is the one the technician gave; ProvisioningError otherwise.

    Fetched without trusting anything yet: a wrong one is refused right here, and a right one
    sent by an impostor is useless to it, since the token then goes only to whoever holds a
    certificate from that CA."""
    url = base + "/enrol/ca"
    try:
        with httpx.Client(verify=False, timeout=timeout) as http, http.stream("GET", url) as resp:
            data = _json_at_most(resp, url)
    except httpx.HTTPError as exc:
        raise ProvisioningError(f"cannot reach central at {url}: {exc}; check the address and the network") from None
    try:
        ca = x509.load_pem_x509_certificate(data["ca_certificate"].encode())
    except (KeyError, TypeError, AttributeError, ValueError):
        raise ProvisioningError(f"{url} did not send a CA certificate: is this central's enrolment address?") from None
    if _fingerprint_hex(ca) != fingerprint_hex:
        raise ProvisioningError(
            "central's CA certificate does not match the fingerprint you gave: wrong fingerprint, wrong central "
            "address, or someone in between; the token was not sent and nothing was written")
    return ca


@dataclass
class EnrolResult:
    device: str
    hall: str
    data_dir: Path
    env_file: Path
    tls: TlsPaths
    broker: tuple[str, int]
    ca_fingerprint: str
    certificate_expires: str
    skipped_settings: list[str] = field(default_factory=list)


def _central_key(answer: dict[str, Any], ca: x509.Certificate) -> VerifyKey:
    """Central's signing key, from the certificate the pinned CA issued for it."""
    try:
        cert = x509.load_pem_x509_certificate(answer["central_key_certificate"].encode())
        cert.verify_directly_issued_by(ca)
    except (KeyError, TypeError, AttributeError, ValueError, InvalidSignature):
        raise ProvisioningError("central's answer does not carry a signing key certified by the CA you pinned: "
                                "someone in between changed it; nothing was written") from None
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    key = cert.public_key()
    if cns != [SIGNING_CN] or not isinstance(key, ed25519.Ed25519PublicKey):
        raise ProvisioningError(f"the certificate for central's signing key names {cns}, not {SIGNING_CN}; nothing was written")
    return VerifyKey(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def _check_answer(answer: Any, key: ec.EllipticCurvePrivateKey, device_id: str, csr: str,
                  pinned: x509.Certificate) -> tuple[x509.Certificate, x509.Certificate, str]:
    """The kiosk's certificate, the CA and central's public key text, once every byte of the answer is central's."""
    if not isinstance(answer, dict):
        raise ProvisioningError("central's answer is not a JSON object; nothing was written")
    try:
        ca = x509.load_pem_x509_certificate(answer["ca_certificate"].encode())
    except (KeyError, TypeError, AttributeError, ValueError):
        raise ProvisioningError("central's answer holds no usable CA certificate; nothing was written") from None
    if ca != pinned:
        raise ProvisioningError("central's answer names another CA than the one you pinned: someone in between; "
                                "nothing was written")
    central = _central_key(answer, ca)
    try:
        verify_object(central, answer)
    except ContractError:
        raise ProvisioningError("central's answer is not signed by central: someone in between changed it "
                                "(its settings are not trusted); nothing was written") from None
    if answer.get("purpose") != ANSWER_PURPOSE or answer.get("csr_sha256") != hashlib.sha256(csr.encode()).hexdigest():
        raise ProvisioningError("central's answer is for another request (replayed?); nothing was written")
    central_text = public_key_text(central)
    config = answer.get("agent_config")
    if answer.get("central_public_key") != central_text or (
            isinstance(config, dict) and config.get("central_public_key", central_text) != central_text):
        raise ProvisioningError("central's answer names another central key than the one its CA certified; nothing was written")
    try:
        cert = x509.load_pem_x509_certificate(answer["certificate"].encode())
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ProvisioningError(f"central's answer holds no usable certificate: {exc}") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ProvisioningError("central's certificate for this kiosk is not signed by the CA it sent") from None
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        raise ProvisioningError("central's certificate is for another TLS key than the one made here")
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if cns != [device_id] or answer.get("device") != device_id:
        raise ProvisioningError(f"central's certificate names {cns}, not this kiosk ({device_id})")
    return cert, ca, central_text


def _agent_values(answer: dict[str, Any], data: Path, tls: TlsPaths) -> tuple[dict[str, str], list[str]]:
    config = answer.get("agent_config")
    if not isinstance(config, dict):
        raise ProvisioningError("central's answer holds no agent configuration")
    fields = AgentSettings.model_fields
    values: dict[str, str] = {"data_dir": str(data)}
    skipped: list[str] = []
    for name, value in config.items():
        if name in fields and name not in LOCAL_ONLY:
            values[name] = str(value)
        else:
            skipped.append(str(name))
    try:
        AgentSettings(**values)
    except ValidationError as exc:
        raise ProvisioningError(f"central sent agent settings this kiosk cannot use: {exc}") from None
    values.update(zip(TLS_FIELDS, (str(tls.ca), str(tls.cert), str(tls.key))))
    return {PREFIX + k.upper(): v for k, v in values.items()}, skipped


def enroll(
    *,
    central_url: str,
    token: str,
    data_dir: Path,
    ca_fingerprint: str,
    force: bool = False,
    software_version: str = "",
    timeout: float = 20.0,
) -> EnrolResult:
    """Enrol this kiosk; AlreadyEnrolled without ``force``, EnrolRefused with central's reason."""
    # Everything that can be checked here is checked before any network, and the CA before the token.
    base = check_central_url(central_url)
    pin = parse_fingerprint(ca_fingerprint)
    data = Path(data_dir).resolve()
    env_file = data / ENV_FILE
    if is_enrolled(data) and not force:
        old = read_env_file(env_file)
        raise AlreadyEnrolled(
            f"this kiosk is already enrolled (hall {old.get(PREFIX + 'HALL', '?')}, settings in {env_file}); "
            "pass --force with a new token to enrol it again"
        )
    ca = fetch_ca(base, pin, timeout)
    # The device key is kept across re-enrolment: the device id, and the outbox's chain, stay the same.
    identity = DeviceIdentity(data)
    key = make_tls_key()
    csr = build_csr(key, identity.device_id)
    body = {"token": token.strip(), "public_key": identity.public_key, "csr": csr,
            "proof": proof_of_possession(identity, csr), "software_version": software_version}
    url = base + "/enrol"
    try:
        with httpx.Client(verify=pinned_tls(ca), timeout=timeout) as http, http.stream("POST", url, json=body) as resp:
            answer = _json_at_most(resp, url)
            status = resp.status_code
    except httpx.ConnectError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc) or isinstance(exc.__context__, ssl.SSLError):
            raise ProvisioningError(
                f"{url} did not prove it is central (its TLS certificate is not from the CA you pinned): someone "
                "in between, or the address is not central's enrolment listener; the token was not sent") from None
        raise ProvisioningError(f"cannot reach central at {url}: {exc}; check the address and the network") from None
    except httpx.HTTPError as exc:
        raise ProvisioningError(f"cannot reach central at {url}: {exc}; check the address and the network") from None
    if status != 200:
        reason = answer.get("detail") if isinstance(answer, dict) else None
        raise EnrolRefused(str(reason or answer), status)
    cert, ca, central_key = _check_answer(answer, key, identity.device_id, csr, ca)
    tls = TlsPaths(data / CA_CERT_FILE, data / TLS_CERT_FILE, data / TLS_KEY_FILE)
    values, skipped = _agent_values(answer, data, tls)
    values[PREFIX + "CENTRAL_PUBLIC_KEY"] = central_key  # the key the CA vouched for, whatever else was said
    pem = serialization.Encoding.PEM
    write_file_atomically(tls.key, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)
    write_file_atomically(tls.cert, cert.public_bytes(pem), 0o644)
    write_file_atomically(tls.ca, ca.public_bytes(pem), 0o644)
    write_env_file(env_file, values, header=f"Written by `hall provision enroll` from {base}.\n"
                                            f"Device {identity.device_id}; edit with care.")
    broker = answer.get("broker") or {}
    return EnrolResult(
        device=identity.device_id, hall=str(answer.get("hall")), data_dir=data, env_file=env_file, tls=tls,
        broker=(str(broker.get("host")), int(broker.get("port") or 0)),
        ca_fingerprint=":".join(f"{b:02X}" for b in bytes.fromhex(_fingerprint_hex(ca))),
        certificate_expires=str(answer.get("certificate_expires", "")), skipped_settings=skipped,
    )
