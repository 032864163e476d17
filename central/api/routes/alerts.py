"""Alerts: the list and each alert's history (viewers), acknowledging (technicians, audited), the rules'
thresholds (viewers read, admins change, audited)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from ... import audit
from ...alerts import queries, rules
from ...store import utc_now
from ..deps import SQLITE_MAX_INT, Admin, StoreDep, Technician, Viewer, remote_of

router = APIRouter(prefix="/api/alerts", tags=["alerts"])
AlertId = PathParam(ge=1, le=SQLITE_MAX_INT)
MAX_RULE_CHANGES = len(rules.RULES)


@router.get("")
def list_alerts(
    store: StoreDep, _: Viewer, request: Request,
    state: Literal["open", "acknowledged", "resolved", "active"] | None = Query(
        None, description="active = open or acknowledged; none = all"),
    limit: int = Query(100, ge=1, le=1000),
    before_id: int | None = Query(None, ge=1, le=SQLITE_MAX_INT, description="page backwards: alerts with a lower id"),
) -> dict[str, Any]:
    """Alerts newest first, the count in each state, and how the engine and its notifications fare."""
    engine = getattr(request.app.state, "alert_engine", None)
    return {"alerts": queries.listed(store, state, limit, before_id), "counts": queries.counts(store),
            "engine": engine.status() if engine is not None else None}


@router.get("/rules")
def get_rules(store: StoreDep, _: Viewer) -> list[dict[str, Any]]:
    """Every rule: enabled or not, each threshold with its default, bounds and meaning, who changed it last."""
    changed = queries.rule_overrides(store)
    return rules.described(rules.effective(changed), changed)


class RuleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None
    params: dict[str, float] = Field(default_factory=dict, max_length=10)


class RuleChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: dict[str, RuleChange] = Field(min_length=1, max_length=MAX_RULE_CHANGES)


@router.put("/rules")
def put_rules(body: RuleChanges, store: StoreDep, staff: Admin, request: Request) -> list[dict[str, Any]]:
    """Change rules' thresholds or switch rules on/off; all changes apply together or none. Audited as alert.rules."""
    try:
        checked = {name: rules.validated(name, change.enabled, change.params) for name, change in body.rules.items()}
    except rules.RuleError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    at = utc_now()
    with store.transaction() as db:
        current = rules.effective(queries.rule_overrides(store))
        for name, params in checked.items():
            enabled = body.rules[name].enabled
            merged = {**current[name]["params"], **params}
            queries.save_rule(db.conn, name, current[name]["enabled"] if enabled is None else enabled, merged, at, staff.name)
        audit.record(store, staff.name, "alert.rules", {n: body.rules[n].model_dump(exclude_none=True) for n in checked},
                     remote_of(request))
    return get_rules(store, staff)


@router.get("/{alert_id}")
def get_alert(store: StoreDep, _: Viewer, alert_id: int = AlertId) -> dict[str, Any]:
    """One alert with its history: opened, acknowledged (by whom), resolved, reopened."""
    found = queries.one(store, alert_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id} / không có cảnh báo này")
    return found


@router.post("/{alert_id}/ack")
def ack_alert(store: StoreDep, staff: Technician, request: Request, alert_id: int = AlertId) -> dict[str, Any]:
    """Acknowledge an open alert: staff say someone is on it. Audited as alert.ack; an acknowledged alert stays
    acknowledged (answered unchanged), a resolved one cannot be acknowledged (409)."""
    with store.transaction() as db:
        found = queries.one(store, alert_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id} / không có cảnh báo này")
        if found["state"] == "resolved":
            raise HTTPException(status.HTTP_409_CONFLICT, f"alert {alert_id} is already resolved / cảnh báo đã hết")
        if queries.acknowledge(db.conn, alert_id, utc_now(), staff.name):
            audit.record(store, staff.name, "alert.ack", {"alert": alert_id, "rule": found["rule"], "subject": found["subject"]},
                         remote_of(request))
    return queries.one(store, alert_id)  # type: ignore[return-value]

