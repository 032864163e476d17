"""Reading a signed message off the wire, the same way for every kind: the size before anything is
parsed, then JSON, a JSON object, and the kind's version; and the first validation error in words."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from .errors import ContractError


def json_object(payload: bytes, *, limit: int, what: str, version: int) -> dict[str, Any]:
    """``payload`` as a JSON object of ``version``, refused unread beyond ``limit`` bytes."""
    if len(payload) > limit:
        raise ContractError(f"{what} is {len(payload)} bytes, limit {limit}")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError(f"{what} is not a JSON object")
    if data.get("v") != version:
        raise ContractError(f"unsupported {what} version {data.get('v')!r}")
    return data


def first_error(exc: ValidationError, whole: str | None = None) -> str:
    """"field.path: message" of the first error; ``whole`` names an error of the whole message."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or whole
    return f"{where}: {err.get('msg')}" if where else str(err.get("msg"))
