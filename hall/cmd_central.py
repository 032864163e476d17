"""`hall central ...`: run central, enrol members, manage meetings and devices.

Every command reads its settings from `HALL_CENTRAL_*` (data directory first of all).
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from contract.errors import HallError

F = TypeVar("F", bound=Callable[..., Any])


def _settings() -> Any:
    from central.settings import CentralSettings

    try:
        return CentralSettings()
    except ValidationError as exc:
        raise click.ClickException(f"bad HALL_CENTRAL_* setting: {exc}") from None


def _store() -> Any:
    from central.store import open_store

    return open_store(_settings().data_dir)


def _errors(fn: F) -> F:
    """Project errors become one clear line on stderr and exit status 1, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HallError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


@click.group()
def central() -> None:
    """Central: collector, registry, dashboard, enrolment (settings from HALL_CENTRAL_*)."""


@central.command()
@click.option("--log-level", default="INFO", show_default=True, help="Python logging level.")
@_errors
def run(log_level: str) -> None:
    """Run the collector and the API/dashboard in one process until Ctrl-C or SIGTERM."""
    from central.service import CentralService

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = CentralService(_settings())
    service.start()
    click.echo(f"Dashboard / Trang điểm danh: {service.url}")
    click.echo(f"Central public key: {service.public_key}")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        done.wait()
    finally:
        service.stop()


@central.command()
@_errors
def key() -> None:
    """Print central's public key (kiosks need it to verify acks and bundles)."""
    from central.keys import central_public_key

    click.echo(central_public_key(_settings()))


@central.command()
@click.option("--id", "member_id", required=True, help="Member id (letters, digits, . _ : -).")
@click.option("--name", required=True, help="Full name.")
@click.option("--cell", required=True, help="Cell (chi bộ) id; created if new.")
@click.option("--cccd", default=None, help="12-digit CCCD number.")
@click.option("--card", "cards", multiple=True, help="Member card UID in hex; repeat for several cards.")
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_errors
def enroll(member_id: str, name: str, cell: str, cccd: str | None, cards: tuple[str, ...], photos: tuple[Path, ...]) -> None:
    """Enrol (or re-enrol) a member from one or more face PHOTOS; photos are not kept."""
    from central import keys
    from central.enrolment import enrol_member

    settings = _settings()
    with _store() as store:
        result = enrol_member(
            store, keys.template_box(settings.data_dir), member_id=member_id, name=name, cell=cell,
            cccd=cccd, cards=list(cards), photos=list(photos),
        )
    click.echo(f"{'enrolled' if result.new else 're-enrolled'} {result.member_id} with {result.templates} face template(s)")


@central.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--photos", "photos_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder holding the photo files named in the CSV.")
@_errors
def import_(csv_file: Path, photos_dir: Path) -> None:
    """Import members from CSV_FILE (columns id,name,cell,cccd,cards,photos; lists ;-separated).

    Bad rows are listed with their line and reason; good rows are still imported.
    """
    from central import keys
    from central.enrolment import import_csv

    settings = _settings()
    with _store() as store:
        report = import_csv(store, keys.template_box(settings.data_dir), csv_file, photos_dir)
    for err in report.errors:
        click.echo(f"line {err.line} ({err.member_id or 'no id'}): {err.reason}", err=True)
    click.echo(f"imported {len(report.imported)} member(s), {len(report.errors)} row(s) refused")
    if report.errors:
        raise SystemExit(1 if not report.imported else 2)


@central.group()
def meeting() -> None:
    """Meetings (a cell meets in a hall)."""


@meeting.command("add")
@click.option("--id", "meeting_id", required=True, help="Meeting id.")
@click.option("--cell", required=True, help="Cell whose members are expected.")
@click.option("--hall", required=True, help="Hall where it takes place.")
@click.option("--title", required=True, help="Title shown on the kiosk and the dashboard.")
@click.option("--starts", required=True, help="Start, ISO 8601 with zone, e.g. 2025-03-01T08:00+07:00.")
@click.option("--ends", required=True, help="End, ISO 8601 with zone.")
@_errors
def meeting_add(meeting_id: str, cell: str, hall: str, title: str, starts: str, ends: str) -> None:
    """Add or update a meeting."""
    from central import registry

    with _store() as store:
        registry.add_meeting(store, meeting_id, cell=cell, hall=hall, title=title, starts=starts, ends=ends)
        m = registry.get_meeting(store, meeting_id)
    click.echo(f"meeting {meeting_id}: {m['starts_at']} – {m['ends_at']} in {hall}")


@meeting.command("list")
@_errors
def meeting_list() -> None:
    """List meetings."""
    from central import registry

    with _store() as store:
        for m in registry.list_meetings(store):
            click.echo(f"{m['id']}\t{m['starts_at']}\t{m['ends_at']}\t{m['hall']}\t{m['cell']}\t{m['title']}")


@central.group()
def device() -> None:
    """Kiosk devices."""


@device.command("add")
@click.option("--public-key", required=True, help="The kiosk's public key (printed by its provisioning).")
@click.option("--hall", required=True, help="Hall the kiosk stands in.")
@_errors
def device_add(public_key: str, hall: str) -> None:
    """Register a kiosk; prints its device id (derived from the key)."""
    from central import registry

    with _store() as store:
        click.echo(registry.add_device(store, public_key, hall))


@device.command("list")
@_errors
def device_list() -> None:
    """List registered kiosks."""
    from central import registry

    with _store() as store:
        for d in registry.list_devices(store):
            state = f"revoked {d['revoked_at']}" if d["revoked_at"] else "active"
            click.echo(f"{d['id']}\t{d['hall']}\t{state}\tregistered {d['registered_at']}")


@device.command("revoke")
@click.argument("device_id")
@_errors
def device_revoke(device_id: str) -> None:
    """Revoke a kiosk: its records are refused from now on and its bundle is withdrawn."""
    from central import registry

    with _store() as store:
        registry.revoke_device(store, device_id)
    click.echo(f"revoked {device_id}")


@central.command("hall")
@click.argument("hall_id")
@click.option("--name", required=True, help="Display name.")
@_errors
def hall_(hall_id: str, name: str) -> None:
    """Add or rename a hall."""
    from central import registry

    with _store() as store:
        registry.add_hall(store, hall_id, name)
    click.echo(f"hall {hall_id}: {name}")


@central.command("cell")
@click.argument("cell_id")
@click.option("--name", required=True, help="Display name.")
@_errors
def cell_(cell_id: str, name: str) -> None:
    """Add or rename a cell (chi bộ)."""
    from central import registry

    with _store() as store:
        registry.add_cell(store, cell_id, name)
    click.echo(f"cell {cell_id}: {name}")
