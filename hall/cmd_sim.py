"""`hall sim ...`: drive the simulated hardware of a running `hall demo`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import httpx

STATE_FILE = Path("var/demo/sim.json")


def _control_url(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("HALL_SIM_CONTROL"):
        return os.environ["HALL_SIM_CONTROL"]
    try:
        return json.loads(STATE_FILE.read_text())["control"]
    except (OSError, ValueError, KeyError):
        click.echo(f"hall sim: no running demo found ({STATE_FILE} missing); start `hall demo` first "
                   "or pass --control URL", err=True)
        sys.exit(2)


def _photo(face: str | None) -> str | None:
    """--face as the demo needs it: checked here (the user sees their own mistake), and absolute,
    since the demo may run from another directory. 'live' is the shared clip's live man."""
    if face is None or face in SPECIAL_FACES:
        return face
    if face == LIVE_FACE:
        from edge_agent.face.sample_media import live_clip_segment
        from edge_agent.face.verdicts import FaceError
        from hall.demo_data import faces_dir

        try:
            return str(live_clip_segment(faces_dir(), MEDIA_DIR).resolve())
        except FaceError as e:
            click.echo(f"hall sim: {e} (set HALL_FACES_DIR)", err=True)
            sys.exit(2)
    path = Path(face).expanduser()
    if not path.is_file():
        click.echo(f"hall sim: no photo at {face}" + ("" if path.exists() else " (no such file)"), err=True)
        sys.exit(2)
    return str(path.resolve())


def _post(control: str | None, path: str, payload: dict) -> None:
    url = _control_url(control) + path
    try:
        reply = httpx.post(url, json=payload, timeout=10)
    except httpx.HTTPError as exc:
        click.echo(f"hall sim: cannot reach the demo at {url}: {exc}", err=True)
        sys.exit(2)
    if reply.status_code == 200:
        click.echo(reply.text)
        return
    try:
        reason = reply.json()["error"]
    except (ValueError, KeyError, TypeError):
        reason = reply.text.strip() or f"HTTP {reply.status_code}"
    click.echo(f"hall sim: the demo refused it: {reason}", err=True)
    sys.exit(2)


SPECIAL_FACES = ("none", "off")  # hall/sim_rig.py EMPTY_SCENE, CAMERA_OFF
LIVE_FACE = "live"
MEDIA_DIR = Path("var/demo/media")  # the live clip's segment, cut once
control_option = click.option("--control", default=None, help="control URL of the demo (default: from var/demo/sim.json)")
face_option = click.option("--face", default=None,
                           help="photo or video the camera shows (default: the member's own probe photo); 'live' for the "
                                "shared clip's live man (a video: with liveness on, a still photo is refused); 'none' for "
                                "an empty scene (the camera works and sees no face), 'off' for a camera that gives no frames")


@click.group()
def sim() -> None:
    """Drive the simulated card reader, QR scanner and camera of a running `hall demo`."""


@sim.command()
@click.option("--card", required=True, help="member-card UID, hex (e.g. 04A1B2C3D4E5F6)")
@face_option
@control_option
def tap(card: str, face: str | None, control: str | None) -> None:
    """Tap a member card on the simulated PN532 (the camera first shows --face)."""
    _post(control, "/tap", {"card": card, "face": _photo(face)})


@sim.command()
@click.argument("text")
@face_option
@control_option
def scan(text: str, face: str | None, control: str | None) -> None:
    """Scan TEXT (a CCCD QR payload) on the simulated serial QR scanner."""
    _post(control, "/scan", {"text": text, "face": _photo(face)})


@sim.command()
@click.option("--hex", "hexdata", default="00ff13ab00ff03fd", show_default=True, help="bytes to inject, hex")
@click.option("--target", type=click.Choice(["card", "qr"]), default="card", show_default=True,
              help="the serial line: the card reader (PN532) or the QR scanner")
@control_option
def garbage(hexdata: str, target: str, control: str | None) -> None:
    """Inject raw bytes (line noise, broken frames) on a simulated serial line."""
    _post(control, "/garbage", {"hex": hexdata, "target": target})
