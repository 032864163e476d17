"""Enrolling a kiosk with central: keys made here, a token redeemed there, configuration written here.

The device's Ed25519 key (edge_agent.identity) and its TLS key are made on the
device and never leave it; central receives the public key, a CSR for the TLS
key (CN = device id) and the device key's signature over that CSR. Central
answers with the client certificate, its CA certificate, the broker's address,
the hall, its own Ed25519 public key and the agent's settings, which are written
as ``HALL_AGENT_*`` lines into ``<data_dir>/agent.env`` (0600; systemd's
``EnvironmentFile=``). That file is written last: its presence means "enrolled".
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from contract import sign_object
from edge_agent.identity import DeviceIdentity, write_file_atomically
from edge_agent.settings import AgentSettings

from . import CA_CERT_FILE, ENV_FILE, TLS_CERT_FILE, TLS_KEY_FILE, AlreadyEnrolled, EnrolRefused, ProvisioningError

PREFIX = "HALL_AGENT_"
PROOF_PURPOSE = "hall-enrol-v1"  # must match central.enrol_tokens.PROOF_PURPOSE
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


def _norm_fingerprint(text: str) -> str:
    return re.sub(r"[^0-9a-f]", "", text.lower())


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


def _check_answer(answer: dict[str, Any], key: ec.EllipticCurvePrivateKey, device_id: str,
                  ca_fingerprint: str | None) -> tuple[x509.Certificate, x509.Certificate]:
    try:
        cert = x509.load_pem_x509_certificate(answer["certificate"].encode())
        ca = x509.load_pem_x509_certificate(answer["ca_certificate"].encode())
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ProvisioningError(f"central's answer holds no usable certificates: {exc}") from None
    got = hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).hexdigest()
    if ca_fingerprint and _norm_fingerprint(ca_fingerprint) != got:
        raise ProvisioningError("central's CA certificate does not match the fingerprint you gave: "
                                "wrong central address, or someone in between; nothing was written")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ProvisioningError("central's certificate for this kiosk is not signed by the CA it sent") from None
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        raise ProvisioningError("central's certificate is for another TLS key than the one made here")
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if cns != [device_id] or answer.get("device") != device_id:
        raise ProvisioningError(f"central's certificate names {cns}, not this kiosk ({device_id})")
    return cert, ca


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
    force: bool = False,
    ca_fingerprint: str | None = None,
    software_version: str = "",
    client: httpx.Client | None = None,
    timeout: float = 20.0,
) -> EnrolResult:
    """Enrol this kiosk; AlreadyEnrolled without ``force``, EnrolRefused with central's reason."""
    data = Path(data_dir).resolve()
    env_file = data / ENV_FILE
    if is_enrolled(data) and not force:
        old = read_env_file(env_file)
        raise AlreadyEnrolled(
            f"this kiosk is already enrolled (hall {old.get(PREFIX + 'HALL', '?')}, settings in {env_file}); "
            "pass --force with a new token to enrol it again"
        )
    # The device key is kept across re-enrolment: the device id, and the outbox's chain, stay the same.
    identity = DeviceIdentity(data)
    key = make_tls_key()
    csr = build_csr(key, identity.device_id)
    body = {"token": token.strip(), "public_key": identity.public_key, "csr": csr,
            "proof": proof_of_possession(identity, csr), "software_version": software_version}
    url = central_url.rstrip("/") + "/enrol"
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    try:
        resp = http.post(url, json=body)
    except httpx.HTTPError as exc:
        raise ProvisioningError(f"cannot reach central at {url}: {exc}; check the address and the network") from None
    finally:
        if own:
            http.close()
    if resp.status_code != 200:
        try:
            reason = str(resp.json().get("detail"))
        except ValueError:
            reason = resp.text[:300] or resp.reason_phrase
        raise EnrolRefused(reason, resp.status_code)
    try:
        answer = resp.json()
    except ValueError:
        raise ProvisioningError(f"central at {url} answered with something other than JSON") from None
    cert, ca = _check_answer(answer, key, identity.device_id, ca_fingerprint)
    tls = TlsPaths(data / CA_CERT_FILE, data / TLS_CERT_FILE, data / TLS_KEY_FILE)
    values, skipped = _agent_values(answer, data, tls)
    pem = serialization.Encoding.PEM
    write_file_atomically(tls.key, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)
    write_file_atomically(tls.cert, cert.public_bytes(pem), 0o644)
    write_file_atomically(tls.ca, ca.public_bytes(pem), 0o644)
    write_env_file(env_file, values, header=f"Written by `hall provision enroll` from {central_url}.\n"
                                            f"Device {identity.device_id}; edit with care.")
    broker = answer.get("broker") or {}
    return EnrolResult(
        device=identity.device_id, hall=str(answer.get("hall")), data_dir=data, env_file=env_file, tls=tls,
        broker=(str(broker.get("host")), int(broker.get("port") or 0)),
        ca_fingerprint=":".join(f"{b:02X}" for b in hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).digest()),
        certificate_expires=str(answer.get("certificate_expires", "")), skipped_settings=skipped,
    )
