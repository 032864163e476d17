"""`hall face …`: face verification tools for technicians and enrolment staff."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.group()
def face() -> None:
    """Face verification tools."""


@face.command()
@click.argument("enrolled_photo", type=click.Path(path_type=Path))
@click.argument("probe_photo", type=click.Path(path_type=Path))
@click.option("--threshold", type=click.FloatRange(0.0, 2.0, min_open=True, max_open=True), default=None,
              help="match at or under this distance [default: edge_agent.face DEFAULT_THRESHOLD]")
def compare(enrolled_photo: Path, probe_photo: Path, threshold: float | None) -> None:
    """Compare the face in PROBE_PHOTO with the one in ENROLLED_PHOTO.

    Both photos must hold exactly one face; each is encoded as enrolment encodes it (full
    resolution). Prints {"match", "distance", "threshold"} as JSON.

    Exit status: 0 match, 1 no match, 2 bad input (unreadable file, no face, several faces).
    """
    from edge_agent.face.pipeline import DEFAULT_THRESHOLD, FaceError, encode_photo

    limit = DEFAULT_THRESHOLD if threshold is None else threshold
    try:
        enrolled = encode_photo(enrolled_photo, role="the enrolled photo")
        probe = encode_photo(probe_photo, role="the probe photo")
    except FaceError as e:
        click.echo(f"hall face compare: {e}", err=True)
        sys.exit(2)
    distance = sum((a - b) ** 2 for a, b in zip(enrolled, probe)) ** 0.5
    match = distance <= limit
    click.echo(json.dumps({"match": match, "distance": round(distance, 4), "threshold": limit}))
    sys.exit(0 if match else 1)


@face.command()
@click.argument("media", type=click.Path(path_type=Path))
def liveness(media: Path) -> None:
    """Is the face in MEDIA a live person? MEDIA is a video, or a folder whose images (in name
    order) are the frames, one look of the kiosk (0.2 s) each.

    Looks at it as the kiosk does (one look every 0.2 s, the face tracked, its 68 landmarks) and
    prints one JSON object: {"live", "blinks", "motion", "frames", "looks", "faces_seen", "tracks",
    "cost_ms_per_look", "thresholds"}: the evidence of the best 3 s window.

    Exit status: 0 live, 1 not live, 2 bad input (missing, unreadable, no frames).
    """
    from edge_agent.face.liveness import evaluate, open_media
    from edge_agent.face.verdicts import FaceError

    try:
        frames, fps = open_media(media)
        result = evaluate(frames, fps=fps)
    except FaceError as e:
        click.echo(f"hall face liveness: {e}", err=True)
        sys.exit(2)
    click.echo(json.dumps(result))
    sys.exit(0 if result["live"] else 1)
