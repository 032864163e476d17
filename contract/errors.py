"""The one exception tree every package of the appliance extends.

Each error also mixes in a built-in, so callers that only know the standard
library (``except ValueError``) still catch it.
"""


class HallError(Exception):
    """Base of every error raised on purpose by this project."""


class ContractError(HallError, ValueError):
    """A message does not follow the wire contract (shape, types, version)."""


class SignatureError(ContractError):
    """A signature is missing, malformed, or does not verify."""
