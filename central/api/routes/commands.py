"""Remote commands to one kiosk (technicians, audited): run its self-test, fetch its last log lines, ask for a resend.

A command goes out over MQTT signed by central (central/commands.py); the kiosk's signed reply
arrives through the collector and shows in the listing.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from contract.commands import MAX_LOG_LINES

from ... import commands
from ...errors import NotFound, RegistryError
from ..deps import StoreDep, Technician, remote_of

router = APIRouter(prefix="/api/devices", tags=["commands"])


class NewCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["selftest", "logs", "resend"]
    lines: int | None = Field(None, ge=1, le=MAX_LOG_LINES, description="logs: how many of the newest lines")
    from_seq: int | None = Field(None, ge=0, le=2**53 - 1, description="resend: the first record seq to send again")


@router.post("/{device}/commands", status_code=status.HTTP_202_ACCEPTED)
def send_command(device: str, body: NewCommand, store: StoreDep, staff: Technician, request: Request) -> dict[str, Any]:
    """Send a command; 202 with its id: the reply comes later in GET .../commands (a kiosk offline now never answers)."""
    collector = request.app.state.collector
    if collector is None or not collector.connected:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "central is not connected to the broker; nothing was sent / chưa kết nối broker")
    try:
        command, wire = commands.issue(store, collector.key, device, body.kind, lines=body.lines, from_seq=body.from_seq,
                                       actor=staff.name, remote=remote_of(request))
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except RegistryError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    try:
        commands.publish(collector, command, wire)
    except commands.NotSent as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return {"id": command.id, "device": device, "kind": command.kind, "expires_at": command.expires_at}


@router.get("/{device}/commands")
def list_commands(device: str, store: StoreDep, _: Technician, limit: int = Query(20, ge=1, le=commands.KEEP_PER_DEVICE)
                  ) -> list[dict[str, Any]]:
    """The kiosk's commands, newest first, with their replies (a self-test's checklist, log lines, what was resent)."""
    return commands.listing(store, device, limit=limit)
