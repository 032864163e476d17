"""`hall central ...`: run central, enrol members, manage meetings, devices and staff accounts.

Changes a staff member would ask about later (devices, enrolment, accounts, officers, PINs) are
recorded in central's audit log with the actor ``cli:<os user>``.

Every command reads its settings from `HALL_CENTRAL_*`, the data directory first of all
(`--data-dir` sets it for one command). Only commands that add something (and `run`) may
start a new, empty database; the others refuse a directory without one, since reading an
empty database there would hide that the data lives elsewhere (the demo's in var/demo/central).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from contract.errors import HallError

F = TypeVar("F", bound=Callable[..., Any])
DATA_DIR_ENV = "HALL_CENTRAL_DATA_DIR"
DEMO_DATA_DIR = "var/demo/central"
HALL_TIME_ZONE = "Asia/Ho_Chi_Minh"  # the halls' local time, in which meetings are listed


def _settings() -> Any:
    from central.settings import CentralSettings

    try:
        return CentralSettings()
    except ValidationError as exc:
        raise click.ClickException(f"bad HALL_CENTRAL_* setting: {exc}") from None


def _require_data(settings: Any) -> None:
    """Refuse, rather than silently start, an empty database where the user expected their data."""
    from central.store import DATABASE_FILE

    data_dir = Path(settings.data_dir).resolve()
    if not (data_dir / DATABASE_FILE).is_file():
        raise click.ClickException(
            f"no central database in {data_dir}. Point at central's data with --data-dir DIR or {DATA_DIR_ENV}=DIR "
            f"(a running `hall demo` keeps it in {DEMO_DATA_DIR}); a new central's database is made by "
            "`hall central run` or by adding a hall, cell, member, device or user.")


def _store(*, create: bool = False) -> Any:
    """The database in the data dir; ``create`` only for commands that add something."""
    from central.store import open_store

    settings = _settings()
    if not create:
        _require_data(settings)
    return open_store(settings.data_dir)


def _audit(store: Any, action: str, detail: dict[str, Any]) -> None:
    from central import audit

    audit.record(store, audit.cli_actor(), action, detail)


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
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"Central's data directory for this command (database, keys, broker files); the same as "
                   f"{DATA_DIR_ENV}. Default: var/central under the current directory.")
@click.pass_context
def central(ctx: click.Context, data_dir: Path | None) -> None:
    """Central: collector, registry, dashboard, enrolment (settings from HALL_CENTRAL_*).

    Data lives in HALL_CENTRAL_DATA_DIR or --data-dir (default var/central, relative to the
    current directory). `hall demo` keeps its central's data in var/demo/central: point the
    commands there to see the demo's members, meetings and devices. Commands other than `run`
    and those that add something refuse a directory without a database.
    """
    if data_dir is not None:
        # Through the environment, so the commands in central/cli_provisioning.py read it too.
        previous = os.environ.get(DATA_DIR_ENV)
        os.environ[DATA_DIR_ENV] = str(data_dir)

        def restore() -> None:
            if previous is None:
                os.environ.pop(DATA_DIR_ENV, None)
            else:
                os.environ[DATA_DIR_ENV] = previous

        ctx.call_on_close(restore)


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

    settings = _settings()
    _require_data(settings)  # a key made here, in the wrong directory, would match no kiosk
    click.echo(central_public_key(settings))


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
    with _store(create=True) as store:
        result = enrol_member(
            store, keys.template_box(settings.data_dir), member_id=member_id, name=name, cell=cell,
            cccd=cccd, cards=list(cards), photos=list(photos),
        )
        _audit(store, "member.enrol", {"member": result.member_id, "new": result.new, "templates": result.templates})
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
    with _store(create=True) as store:
        report = import_csv(store, keys.template_box(settings.data_dir), csv_file, photos_dir)
        if report.imported:
            _audit(store, "member.import", {"file": csv_file.name, "members": [e.member_id for e in report.imported],
                                            "refused": len(report.errors)})
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
@click.option("--secretary", default=None, help="Member id of the meeting's secretary (of its cell): may confirm a member whose face check fails.")
@click.option("--chair", default=None, help="Member id of the meeting's chair (of its cell): may confirm as the secretary does.")
@_errors
def meeting_add(meeting_id: str, cell: str, hall: str, title: str, starts: str, ends: str,
                secretary: str | None, chair: str | None) -> None:
    """Add or update a meeting of an existing cell in an existing hall (times are stored in UTC)."""
    from central import officers, registry

    with _store() as store, store.transaction():
        registry.check_meeting_place(store, cell=cell, hall=hall)
        registry.add_meeting(store, meeting_id, cell=cell, hall=hall, title=title, starts=starts, ends=ends)
        if secretary or chair:
            chosen = officers.set_officers(store, meeting_id, secretary=secretary, chair=chair)
            _audit(store, "meeting.officers", {"meeting": meeting_id, **chosen})
        m = registry.get_meeting(store, meeting_id)
    # Echoed in the zone each time was given in, so the user recognises what they typed.
    shown = [_local_text(m[key], _zone_of(given)) for key, given in (("starts_at", starts), ("ends_at", ends))]
    click.echo(f"meeting {meeting_id}: {shown[0]} – {shown[1]} in {hall}")
    _echo_officers(m)


def _echo_officers(m: dict[str, Any]) -> None:
    if m.get("secretary") or m.get("chair"):
        click.echo(f"  secretary {m.get('secretary') or '-'}, chair {m.get('chair') or '-'}")


@meeting.command("officers")
@click.argument("meeting_id")
@click.option("--secretary", default=None, help="Member id of the secretary (of the meeting's cell).")
@click.option("--chair", default=None, help="Member id of the chair (of the meeting's cell).")
@_errors
def meeting_officers(meeting_id: str, secretary: str | None, chair: str | None) -> None:
    """Name the secretary and/or chair of MEETING_ID (an officer not given is kept); without options, show them.

    Either may confirm at the kiosk a member whose face check failed, with their own card and PIN
    (`hall central member set-pin`).
    """
    from central import officers, registry

    with _store() as store, store.transaction():
        if secretary or chair:
            chosen = officers.set_officers(store, meeting_id, secretary=secretary, chair=chair)
            _audit(store, "meeting.officers", {"meeting": meeting_id, **chosen})
        m = registry.get_meeting(store, meeting_id)
        if m is None:
            raise click.ClickException(f"no meeting {meeting_id}")
        missing = [who for who in (m["secretary"], m["chair"]) if who and not officers.has_pin(store, who)]
    click.echo(f"meeting {meeting_id}: secretary {m['secretary'] or '-'}, chair {m['chair'] or '-'}")
    for who in missing:
        click.echo(f"  {who} has no PIN yet: hall central member set-pin {who}", err=True)


@central.group()
def member() -> None:
    """Members' own settings (enrol them with `hall central enroll`)."""


@member.command("set-pin")
@click.argument("member_id")
@click.option("--pin-stdin", is_flag=True, help="Read the PIN from the first line of stdin (scripts) instead of a prompt.")
@_errors
def member_set_pin(member_id: str, pin_stdin: bool) -> None:
    """Set the PIN (4-8 digits) MEMBER_ID types at the kiosk when confirming a member as secretary or chair.

    The PIN is read from a prompt that does not echo it, or from stdin: never from the command line,
    which other users see in `ps`. Central keeps only its argon2id hash.
    """
    import getpass

    from central import officers

    if pin_stdin:
        pin = sys.stdin.readline(64).rstrip("\r\n")
    else:
        pin = getpass.getpass(f"PIN for {member_id} (4-8 digits): ")
        if getpass.getpass("Again: ") != pin:
            raise click.ClickException("the two PINs differ; nothing changed")
    officers.check_pin(pin)
    with _store() as store, store.transaction():
        officers.set_pin(store, member_id, pin)
        _audit(store, "member.pin", {"member": member_id})
    click.echo(f"PIN of {member_id} set; kiosks receive it with their next bundle")


@meeting.command("list")
@_errors
def meeting_list() -> None:
    """List meetings: id, start, end (the halls' local time, Asia/Ho_Chi_Minh), hall, cell, title."""
    from zoneinfo import ZoneInfo

    from central import registry

    zone = ZoneInfo(HALL_TIME_ZONE)
    with _store() as store:
        for m in registry.list_meetings(store):
            starts, ends = _local_text(m["starts_at"], zone), _local_text(m["ends_at"], zone)
            click.echo(f"{m['id']}\t{starts}\t{ends}\t{m['hall']}\t{m['cell']}\t{m['title']}")


def _zone_of(given: str) -> tzinfo:
    """The zone (offset) a time was typed with; the halls' zone if it cannot be read back."""
    from zoneinfo import ZoneInfo

    try:
        zone = datetime.fromisoformat(given.strip()).tzinfo
    except ValueError:
        zone = None
    return zone or ZoneInfo(HALL_TIME_ZONE)


def _local_text(stored_utc: str, zone: tzinfo) -> str:
    """A stored UTC time in ``zone``, ISO 8601 to the minute (seconds only when there are any)."""
    moment = datetime.fromisoformat(stored_utc).astimezone(zone)
    text = moment.isoformat(timespec="seconds" if moment.second else "minutes")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@central.group()
def device() -> None:
    """Kiosk devices."""


@device.command("add")
@click.option("--public-key", required=True, help="The kiosk's public key (printed by its provisioning).")
@click.option("--hall", required=True, help="Hall the kiosk stands in.")
@click.option("--position", default=None, help="Where in the hall (\"cửa chính\"): the kiosk is named \"<hall's name> — "
              "<position>\" (default: \"— máy N\"; rename it with `device rename`).")
@_errors
def device_add(public_key: str, hall: str, position: str | None) -> None:
    """Register a kiosk; prints its device id (derived from the key)."""
    from central import registry

    with _store(create=True) as store, store.transaction():
        device_id = registry.add_device(store, public_key, hall, position=position)
        _audit(store, "device.register", {"device": device_id, "hall": hall,
                                          "name": registry.get_device(store, device_id)["name"]})
    click.echo(device_id)


@device.command("rename")
@click.argument("device_id")
@click.argument("name")
@_errors
def device_rename(device_id: str, name: str) -> None:
    """Give kiosk DEVICE_ID the name NAME staff see everywhere (e.g. "Nhà văn hoá thôn Đông — cửa phụ")."""
    from central import registry

    with _store() as store, store.transaction():
        old = registry.rename_device(store, device_id, name)
        new = registry.get_device(store, device_id)["name"]
        _audit(store, "device.rename", {"device": device_id, "from": old, "to": new})
    click.echo(f"{device_id}: {new}")


@device.command("list")
@_errors
def device_list() -> None:
    """List registered kiosks."""
    from central import registry

    with _store() as store:
        for d in registry.list_devices(store):
            state = f"revoked {d['revoked_at']}" if d["revoked_at"] else "active"
            click.echo(f"{d['id']}\t{d['hall']}\t{d['name'] or '-'}\t{state}\tregistered {d['registered_at']}")


@device.command("revoke")
@click.argument("device_id")
@click.option("--broker-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The TLS broker's files from `broker-config` (default: <data_dir>/broker).")
@_errors
def device_revoke(device_id: str, broker_dir: Path | None) -> None:
    """Revoke a kiosk: its records are refused from now on and its bundle is withdrawn."""
    from central import registry

    with _store() as store, store.transaction():
        registry.revoke_device(store, device_id)
        _audit(store, "device.revoke", {"device": device_id})
    click.echo(f"revoked {device_id}")
    from central.cli_provisioning import revoke_at_broker

    revoke_at_broker(broker_dir)


@central.command("hall")
@click.argument("hall_id")
@click.option("--name", required=True, help="Display name.")
@click.option("--province", default=None, help="Province or city (one of the 34 since the 2025 reform; "
              "diacritics and 'Tỉnh'/'Thành phố' optional).")
@click.option("--commune", default=None, help="Commune or ward (xã, phường, đặc khu) of that province.")
@_errors
def hall_(hall_id: str, name: str, province: str | None, commune: str | None) -> None:
    """Add or rename a hall, and say where it is (commune and province are checked against the official list)."""
    from central import registry

    with _store(create=True) as store:
        registry.add_hall(store, hall_id, name, commune=commune, province=province)
        h = registry.get_hall(store, hall_id)
    where = ", ".join(p for p in (h["commune"], h["province"]) if p)
    click.echo(f"hall {hall_id}: {h['name']}" + (f" ({where})" if where else ""))


@central.command("cell")
@click.argument("cell_id")
@click.option("--name", required=True, help="Display name.")
@click.option("--province", default=None, help="Province or city the cell belongs to (for the province roll-ups); "
              "when no place is given, the cell takes its hall's at its first meeting.")
@click.option("--commune", default=None, help="Commune or ward of that province (for the commune roll-ups).")
@_errors
def cell_(cell_id: str, name: str, province: str | None, commune: str | None) -> None:
    """Add or rename a cell (chi bộ), and say which commune and province it belongs to."""
    from central import registry

    with _store(create=True) as store:
        registry.add_cell(store, cell_id, name, commune=commune, province=province)
        c = registry.get_cell(store, cell_id)
    where = ", ".join(p for p in (c["commune"], c["province"]) if p)
    click.echo(f"cell {cell_id}: {name}" + (f" ({where})" if where else ""))


def _new_password(password_stdin: bool) -> tuple[str, bool]:
    """(password, generated?): read from stdin (first line) or generated."""
    if not password_stdin:
        from central.accounts import generate_password

        return generate_password(), True
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise click.ClickException("--password-stdin: no password on standard input")
    return line, False


@central.group()
def user() -> None:
    """Staff accounts: viewer < technician < admin."""


@user.command("add")
@click.option("--username", required=True, help="Login name: 2–32 of a-z 0-9 . _ -")
@click.option("--role", required=True, type=click.Choice(["viewer", "secretary", "technician", "admin"]), help="What the account may do (a secretary also records excuses, closes and amends meeting sheets).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin instead of generating one.")
@_errors
def user_add(username: str, role: str, password_stdin: bool) -> None:
    """Create a staff account; a generated password is printed once."""
    from central import accounts

    password, generated = _new_password(password_stdin)
    with _store(create=True) as store, store.transaction():
        made = accounts.add_user(store, username, role, password)
        _audit(store, "user.create", {"user": made["username"], "role": role})
    click.echo(f"created {made['username']} ({role})")
    if generated:
        click.echo(f"password (shown once): {password}")


@user.command("list")
@_errors
def user_list() -> None:
    """List staff accounts."""
    from central import accounts

    with _store() as store:
        for u in accounts.list_users(store):
            state = f"disabled {u['disabled_at']}" if u["disabled_at"] else "active"
            click.echo(f"{u['username']}\t{u['role']}\t{state}\t{u['tokens']} token(s)\tcreated {u['created_at']}")


@user.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the new password from the first line of stdin instead of generating one.")
@_errors
def user_passwd(username: str, password_stdin: bool) -> None:
    """Set USERNAME's password and end their sessions; a generated password is printed once."""
    from central import accounts

    password, generated = _new_password(password_stdin)
    with _store() as store, store.transaction():
        accounts.set_password(store, username, password)
        _audit(store, "user.password", {"user": username})
    click.echo(f"password of {username} changed; their sessions are ended")
    if generated:
        click.echo(f"password (shown once): {password}")


@user.command("role")
@click.argument("username")
@click.argument("role", type=click.Choice(["viewer", "secretary", "technician", "admin"]))
@_errors
def user_role(username: str, role: str) -> None:
    """Give USERNAME another ROLE."""
    from central import accounts

    with _store() as store, store.transaction():
        before = accounts.set_role(store, username, role)
        _audit(store, "user.role", {"user": username, "from": before, "to": role})
    click.echo(f"{username}: {before} → {role}")


@user.command("disable")
@click.argument("username")
@click.option("--enable", is_flag=True, help="Re-enable the account instead.")
@_errors
def user_disable(username: str, enable: bool) -> None:
    """Disable USERNAME: sessions end and API tokens are refused (until --enable)."""
    from central import accounts

    with _store() as store, store.transaction():
        changed = accounts.set_disabled(store, username, not enable)
        if changed:
            _audit(store, "user.enable" if enable else "user.disable", {"user": username})
    click.echo(f"{username} {'enabled' if enable else 'disabled'}{'' if changed else ' already'}")


@user.group("token")
def user_token() -> None:
    """API tokens: bearer credentials for scripts and machines, acting as a user."""


@user_token.command("add")
@click.argument("username")
@click.option("--name", required=True, help="What uses the token (a host, a script).")
@_errors
def token_add(username: str, name: str) -> None:
    """Make an API token for USERNAME; it is printed once (only its hash is kept)."""
    from central import accounts

    with _store() as store, store.transaction():
        token_id, token = accounts.issue_token(store, username, name)
        _audit(store, "token.create", {"user": username, "token_id": token_id, "name": name})
    click.echo(f"token {token_id} for {username} (shown once; send as 'Authorization: Bearer <token>'):", err=True)
    click.echo(token)


@user_token.command("list")
@click.argument("username")
@_errors
def token_list(username: str) -> None:
    """List USERNAME's API tokens (never the tokens themselves)."""
    from central import accounts

    with _store() as store:
        for t in accounts.list_tokens(store, username):
            state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
            click.echo(f"{t['id']}\t{t['name']}\t{state}\tcreated {t['created_at']}\tlast used {t['last_used_at'] or 'never'}")


@user_token.command("revoke")
@click.argument("username")
@click.argument("token_id", type=int)
@_errors
def token_revoke(username: str, token_id: int) -> None:
    """Revoke one of USERNAME's API tokens."""
    from central import accounts

    with _store() as store, store.transaction():
        accounts.revoke_token(store, username, token_id)
        _audit(store, "token.revoke", {"user": username, "token_id": token_id})
    click.echo(f"revoked token {token_id} of {username}")


@central.command("login-link")
@click.option("--user", "username", default=None,
              help="Log in as this account (default: the staff-token admin, while HALL_CENTRAL_STAFF_TOKEN_ENABLED).")
@click.option("--minutes", default=15.0, show_default=True, type=click.FloatRange(0, 24 * 60, min_open=True),
              help="How long the link stays usable.")
@click.option("--origin", default=None,
              help="Where staff open central (default: the first of HALL_CENTRAL_PUBLIC_ORIGINS, else http://HTTP_HOST:HTTP_PORT).")
@_errors
def login_link(username: str | None, minutes: float, origin: str | None) -> None:
    """Print a one-time login link (/login/once/CODE): it works once, for a few minutes.

    Tokens never travel in URLs; this link is the way to open the page without a password.
    """
    from central import accounts

    settings = _settings()
    with _store() as store, store.transaction():
        code = accounts.issue_login_link(store, username, ttl_s=minutes * 60)
        _audit(store, "login-link.create", {"user": username or accounts.STAFF_TOKEN_ACTOR, "minutes": minutes})
    base = (origin or settings.allowed_origins()[0]).rstrip("/")
    click.echo(f"{base}/login/once/{code}")
    click.echo(f"one-time login link for {username or 'the staff-token admin'}, valid {minutes:g} min", err=True)


@central.command("audit")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="How many entries.")
@click.option("--action", default=None, help="Only this action, or a prefix ending in '.' (login.).")
@_errors
def audit_log(limit: int, action: str | None) -> None:
    """Show the audit log of staff actions, newest first."""
    from central import audit

    with _store() as store:
        for e in audit.entries(store, limit=limit, action=action):
            click.echo(f"{e['at']}\t{e['actor']}\t{e['action']}\t{e['detail']}\t{e['remote'] or '-'}")


def _attach_provisioning() -> None:
    from central.cli_provisioning import broker_config, token

    central.add_command(token)
    central.add_command(broker_config)


_attach_provisioning()
from . import cmd_membership  # noqa: E402,F401  (adds `member transfer|standing|leave|joined|history`)
