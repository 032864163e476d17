"""Errors of the kiosk service."""

from contract.errors import HallError


class AgentError(HallError):
    """Base of the kiosk service's errors."""


class DiskFullError(AgentError, OSError):
    """The data directory cannot take another record; nothing already queued is lost."""


class AlreadyCheckedIn(AgentError, LookupError):
    """The member already has a record for this meeting on this device."""

    def __init__(self, meeting: str, member: str, seq: int):
        super().__init__(f"{member} already checked in to {meeting} (record {seq})")
        self.meeting, self.member, self.seq = meeting, member, seq


class BundleRejected(AgentError, ValueError):
    """A roster bundle failed verification or would roll the roster back."""
