"""The technician's tools on the kiosk: enrol with central, then check the hardware.

``hall provision enroll`` makes the device's keys on the device, redeems a
one-time token at central for a client certificate and the agent's
configuration, writes them into the data directory and runs the self-test;
``hall provision selftest`` runs the checks again at any time.
"""

from __future__ import annotations

from contract.errors import HallError

# Files in the agent's data directory (next to device.key and storage.key from edge_agent.identity).
TLS_KEY_FILE = "tls.key"
TLS_CERT_FILE = "tls.crt"
CA_CERT_FILE = "ca.crt"
ENV_FILE = "agent.env"


class ProvisioningError(HallError, RuntimeError):
    """Provisioning could not finish; the message says what to do."""


class AlreadyEnrolled(ProvisioningError):
    """The kiosk is enrolled already and --force was not given."""


class EnrolRefused(ProvisioningError, PermissionError):
    """Central refused the enrolment; ``reason`` is central's words."""

    def __init__(self, reason: str, status: int):
        super().__init__(f"central refused the enrolment ({status}): {reason}")
        self.reason, self.status = reason, status
