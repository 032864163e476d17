"""POST /enrol: a kiosk redeems a one-time token for its registration, certificate and configuration.

Public (no staff login): the token is the credential. ``GET /enrol/ca`` hands out
the CA certificate the kiosk pins before it sends the token; the answer is
signed (central/enrol_answer.py). Every refusal is kept in
``rejections`` (topic ``enrol``) with its reason, and the token is shown there
only as the first characters of its hash.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pydantic_core
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...broker_config import BrokerConfigError, BrokerFiles, have_broker_config, refresh, reload_broker
from ...enrol_answer import signed_answer
from ...enrol_tokens import EnrolmentConfig, EnrolRefused, broker_address, redeem, token_hash
from ...ingest import reject
from ...store import Store
from ..deps import Public
from ..throttle import source_of

log = logging.getLogger("central.api.enrol")

router = APIRouter(prefix="/enrol", tags=["enrol"], dependencies=[Public])
KEPT_PREFIX = 512  # of a refused body that parsed: enough to see what was tried, too little to fill a disk
TOPIC = "enrol"


class EnrolRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200, description="the one-time enrolment token staff gave the technician")
    public_key: str = Field(min_length=1, max_length=200, description="the device's Ed25519 public key (base64url)")
    csr: str = Field(min_length=1, max_length=16 * 1024, description="PEM certificate signing request for the device's TLS key, CN = device id")
    proof: str = Field(min_length=1, max_length=200, description="the device key's signature (contract.sign_object) over {purpose, csr_sha256}")
    software_version: str = Field("", max_length=100, description="the kiosk software's version, for the log")


def _redacted(body: Any) -> bytes:
    """A parsed request as kept in rejections: the token replaced by a prefix of its hash, then cut short."""
    if isinstance(body, dict) and isinstance(body.get("token"), str):
        body = {**body, "token": f"sha256:{token_hash(body['token'])[:12]}…"}
    return json.dumps(body, ensure_ascii=False).encode()[:KEPT_PREFIX]


def _parse(raw: bytes) -> Any:
    try:
        # pydantic-core's parser stops at a fixed nesting depth with ValueError, where json.loads would recurse.
        return pydantic_core.from_json(raw)
    except ValueError as exc:
        raise EnrolRefused(f"the enrolment request is not JSON: {exc}", status=400) from None


def _enrol(store: Store, config: EnrolmentConfig, raw: bytes) -> dict[str, Any]:
    kept = b""  # a body that did not parse is not kept at all
    try:
        body = _parse(raw)
        kept = _redacted(body)
        try:
            req = EnrolRequest.model_validate(body)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            raise EnrolRefused(f"malformed enrolment request: {problems}", status=422) from None
        done = redeem(store, config.pki, token=req.token, public_key=req.public_key, csr_pem=req.csr,
                      proof=req.proof, cert_days=config.cert_days)
    except EnrolRefused as exc:
        with store.transaction():
            reject(store, TOPIC, exc.device, exc.reason, kept)
        raise HTTPException(exc.status, detail=exc.reason) from None
    log.info("enrolled device %s in hall %s (certificate %s)", done.device, done.hall, done.certificate.serial)
    _update_broker(store, config)
    host, port = broker_address(store, config.broker_host, config.broker_port)
    return signed_answer(config, done, req.csr, broker_host=host, broker_port=port)


def _update_broker(store: Store, config: EnrolmentConfig) -> None:
    """Give the new kiosk its topics in the broker's ACL; without this it could connect but not publish."""
    if config.broker_dir is None:
        return
    files = BrokerFiles(config.broker_dir)
    if not have_broker_config(files):
        log.warning("no broker configuration in %s: run `hall central broker-config`", files.dir)
        return
    try:
        refresh(store, config.pki, files, prefix=config.topic_prefix)
        reload_broker(files)
    except (BrokerConfigError, OSError) as exc:
        # The device is enrolled; staff must reload the broker by hand. Say so loudly.
        log.error("enrolled, but the broker's ACL could not be updated: %s", exc)


@router.get("/ca")
async def enrol_ca(request: Request) -> dict[str, str]:
    """Central's CA certificate: a kiosk compares its fingerprint with the one the technician typed
    before it sends the token, then trusts only this CA for the TLS connection that carries it."""
    config: EnrolmentConfig | None = getattr(request.app.state, "enrolment", None)
    if config is None:
        raise HTTPException(503, detail="enrolment is not configured on this central (no broker address or CA)")
    pem = await run_in_threadpool(config.pki.ca_pem)
    return {"ca_certificate": pem.decode()}


@router.post("")
async def enrol(request: Request) -> dict[str, Any]:
    """Redeem a token: register the device in the token's hall and return its certificate and configuration."""
    config: EnrolmentConfig | None = getattr(request.app.state, "enrolment", None)
    if config is None:
        raise HTTPException(503, detail="enrolment is not configured on this central (no broker address or CA)")
    store: Store = request.app.state.store
    source = source_of(request.client.host if request.client else None)  # an IPv6 host counts by its /64, as logins do
    decision = config.limiter.take(source)
    if not decision.allowed:
        if decision.first_refusal:
            # One note per burst of refusals: the flood itself is neither read nor stored.
            await run_in_threadpool(_note_limited, store, source, config)
        raise HTTPException(429, detail="too many enrolment requests from this address; wait and try again",
                            headers={"Retry-After": str(max(1, round(decision.retry_after_s)))})
    # BodyLimit (central/api/app.py) ends the request with 413 once the body passes the /enrol limit.
    raw = await request.body()
    # Signing and SQLite writes block: keep them off the event loop.
    return await run_in_threadpool(_enrol, store, config, raw)


def _note_limited(store: Store, source: str, config: EnrolmentConfig) -> None:
    reason = (f"too many enrolment requests from {source} (more than {config.limiter.burst} at once or "
              f"{config.limiter.per_minute:g} a minute): refused with 429 and not kept until it slows down")
    with store.transaction():
        reject(store, TOPIC, None, reason, b"")
