"""Errors of central; each mixes in a built-in so standard-library callers still catch them."""

from contract.errors import HallError


class CentralError(HallError):
    """Base of central's errors."""


class SettingsError(CentralError, ValueError):
    """A setting is missing or holds a placeholder (for example the staff token)."""


class RegistryError(CentralError, ValueError):
    """A registry change is invalid (unknown reference, bad id, duplicate card...)."""


class NotFound(RegistryError, LookupError):
    """The named hall, cell, member, meeting or device does not exist."""


class Conflict(CentralError, ValueError):
    """The change collides with the thing's state (closing a closed meeting): HTTP 409."""


class EnrolmentError(CentralError, ValueError):
    """A member could not be enrolled (no usable face in a photo, bad CSV row...)."""


class KeyFileError(CentralError, OSError):
    """A key file is unreadable, has the wrong size or is open to other users."""


class AccountError(CentralError, ValueError):
    """A staff account change is invalid (bad username, unknown role, weak password...)."""


class UnknownUser(AccountError, LookupError):
    """The named staff account does not exist."""
