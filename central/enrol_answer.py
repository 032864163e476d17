"""What central answers an enrolling kiosk, signed so that nobody between the two can change it.

The answer carries the kiosk's certificate, the CA, the broker's address, the
hall and every agent setting (face threshold, camera, stream URLs, central's
key …). Central signs all of it with its Ed25519 key (contract.sign_object) and
adds the certificate its CA issued for that key; the kiosk, which pinned the CA
by fingerprint, checks that certificate, then the signature. ``csr_sha256``
ties the answer to this one request, so an old answer cannot be replayed.
"""

from __future__ import annotations

import hashlib
from typing import Any

from nacl.signing import SigningKey

from contract import sign_object

from .enrol_tokens import Enrolled, EnrolmentConfig

ANSWER_PURPOSE = "hall-enrol-answer-v1"  # must match provisioning.enrol.ANSWER_PURPOSE


def signed_answer(config: EnrolmentConfig, done: Enrolled, csr_pem: str, *, broker_host: str, broker_port: int) -> dict[str, Any]:
    key: SigningKey = config.signing_key
    agent = {
        "hall": done.hall,
        "mqtt_host": broker_host,
        "mqtt_port": str(broker_port),
        "topic_prefix": config.topic_prefix,
        "central_public_key": config.central_public_key,
        **config.agent_config,
    }
    body = {
        "purpose": ANSWER_PURPOSE,
        "csr_sha256": hashlib.sha256(csr_pem.encode()).hexdigest(),
        "device": done.device,
        "hall": done.hall,
        "certificate": done.certificate.pem.decode(),
        "certificate_expires": done.certificate.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ca_certificate": config.pki.ca_pem().decode(),
        "central_key_certificate": config.pki.signing_key_certificate(bytes(key.verify_key)).decode(),
        "broker": {"host": broker_host, "port": broker_port},
        "central_public_key": config.central_public_key,
        "topic_prefix": config.topic_prefix,
        "agent_config": agent,
    }
    return sign_object(key, body)
