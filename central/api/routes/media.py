"""nginx-rtmp's publish callback: may this publisher push to the media server?

Called by central's own nginx (``on_publish`` in central/media.py), never by
staff or browsers: it answers loopback callers only. nginx POSTs the RTMP
connect/publish fields form-encoded (``call=publish&app=hall&name=...&addr=...``).
2xx lets the push in and 3xx lets it in renamed to the Location header (we answer
302 → ``<device_id>``, so the key never appears in HLS URLs or file names);
anything else makes nginx drop the publisher.
Every refusal is logged and kept in the rejections table (topic
``media/on_publish``) with its reason, the presented key redacted.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Annotated
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import Response

from ... import registry
from ...ingest import reject
from ...media import KEY_SEP, check_stream_key
from ..deps import Public, StoreDep

log = logging.getLogger(__name__)

TOPIC = "media/on_publish"
APPS = ("hall", "main")
MAX_BODY = 4096


def loopback_only(request: Request) -> None:
    host = request.client.host if request.client else ""
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        log.warning("media callback from non-loopback %s refused", host)
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="media callbacks are for the local media server only")


def media_secret_of(request: Request) -> bytes | None:
    return getattr(request.app.state, "media_secret", None)


LoopbackOnly = Depends(loopback_only)
MediaSecret = Annotated[bytes | None, Depends(media_secret_of)]

router = APIRouter(prefix="/media", tags=["media"], dependencies=[Public, LoopbackOnly])


def _redacted(fields: dict[str, str]) -> bytes:
    shown = dict(fields)
    name = shown.get("name", "")
    if KEY_SEP in name:
        shown["name"] = name.partition(KEY_SEP)[0] + KEY_SEP + "***"
    return urlencode(shown).encode()


@router.post("/on_publish", status_code=status.HTTP_302_FOUND)
async def on_publish(request: Request, store: StoreDep, secret: MediaSecret) -> Response:
    """Called by nginx-rtmp (not staff) when a device starts pushing: 302 allows (renamed to the device id), 403 refuses."""
    body = (await request.body())[:MAX_BODY]
    fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    name, app = fields.get("name", ""), fields.get("app", "")
    claimed = name.partition(KEY_SEP)[0] or None
    reason: str | None = None
    device_id: str | None = None
    if secret is None:
        reason = "central has no media secret configured"
    elif app not in APPS:
        reason = f"unknown application {app!r}"
    elif (device_id := check_stream_key(secret, name)) is None:
        reason = "wrong stream key" if claimed else "no stream key"
    else:
        row = registry.get_device(store, device_id)
        if row is None:
            reason = "device not registered"
        elif row.get("revoked_at"):
            reason = f"device revoked on {row['revoked_at']}"
    if reason is not None:
        with store.transaction():
            reject(store, TOPIC, claimed, f"publish to {app or '?'} from {fields.get('addr', '?')} refused: {reason}", _redacted(fields))
        return Response(status_code=status.HTTP_403_FORBIDDEN, content=reason, media_type="text/plain")
    log.info("media: device %s publishing to %s from %s", device_id, app, fields.get("addr", "?"))
    # A 3xx from on_publish makes nginx-rtmp rename the stream to Location: the HLS
    # playlist and the recordings are then named by device id, without the key.
    return Response(status_code=status.HTTP_302_FOUND, headers={"Location": device_id})
