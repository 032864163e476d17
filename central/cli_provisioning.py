"""Click commands for `hall central`: enrolment tokens, revocation, the broker's TLS configuration.

``token`` (a group: create, list) and ``broker_config`` are
attached under ``hall central`` by hall/cmd_central.py, whose ``device revoke``
calls ``revoke_at_broker``. Settings come from
``HALL_CENTRAL_*``; the broker's files live in ``<data_dir>/broker`` unless
``--broker-dir``/``--out`` says otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from contract.errors import HallError

F = TypeVar("F", bound=Callable[..., Any])
BROKER_DIR = "broker"


def _settings() -> Any:
    from .settings import CentralSettings

    try:
        return CentralSettings()
    except ValidationError as exc:
        raise click.ClickException(f"bad HALL_CENTRAL_* setting: {exc}") from None


def _errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HallError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def default_broker_dir(settings: Any) -> Path:
    return Path(settings.data_dir) / BROKER_DIR


@click.group()
def token() -> None:
    """One-time enrolment tokens for kiosks."""


@token.command("create")
@click.option("--hall", required=True, help="Hall the kiosk will stand in (must exist).")
@click.option("--ttl", default="24h", show_default=True, help="How long the token may be used: 90m, 24h, 7d (at most 30d).")
@click.option("--position", default=None, help="Where in the hall the kiosk stands (\"cửa chính\"): the kiosk is named "
              "\"<hall's name> — <position>\" (default: \"— máy N\").")
@_errors
def token_create(hall: str, ttl: str, position: str | None) -> None:
    """Make a one-time token; it is printed once and stored only as a hash."""
    from .enrol_tokens import create_token, parse_ttl
    from .pki import CentralPki
    from .store import open_store

    settings = _settings()
    with open_store(settings.data_dir) as store:
        issued = create_token(store, hall, parse_ttl(ttl), position=position)
    pki = CentralPki.for_data_dir(settings.data_dir)
    pki.ensure_ca()
    click.echo(issued.token)
    at = f" ({issued.position})" if issued.position else ""
    click.echo(f"one-time enrolment token for hall {issued.hall}{at}, valid until {issued.expires_at}; "
               "it is shown only now", err=True)
    url = f"https://CENTRAL:{settings.enrol_port}" if settings.enrol_port else "https://CENTRAL:ENROL_PORT"
    click.echo(f"on the kiosk: hall provision enroll --central {url} --token {issued.token} "
               f"--ca-fingerprint {pki.ca_fingerprint()}", err=True)
    if not settings.enrol_port:
        click.echo("central's HTTPS enrolment listener is off: set HALL_CENTRAL_ENROL_HOST/ENROL_PORT", err=True)


@token.command("list")
@_errors
def token_list() -> None:
    """List tokens (never their secret): id, hall, position, created, expires, used."""
    from .enrol_tokens import list_tokens
    from .store import open_store

    with open_store(_settings().data_dir) as store:
        for t in list_tokens(store):
            used = f"used {t['used_at']} by {t['used_by']}" if t["used_at"] else "unused"
            click.echo(f"{t['id']}\t{t['hall']}\t{t['position'] or '-'}\tcreated {t['created_at']}\texpires {t['expires_at']}\t{used}")


def revoke_at_broker(broker_dir: Path | None) -> None:
    """After a revocation: rewrite the CRL and ACL, and make a running TLS broker (pid file) reload both."""
    from .broker_config import BrokerFiles, have_broker_config, refresh, reload_broker
    from .pki import CentralPki
    from .store import open_store

    settings = _settings()
    files = BrokerFiles(broker_dir or default_broker_dir(settings))
    if not have_broker_config(files):
        click.echo(f"no broker configuration in {files.dir}: CRL and ACL not written "
                   "(run `hall central broker-config` if the broker uses TLS)", err=True)
        return
    with open_store(settings.data_dir) as store:
        refresh(store, CentralPki.for_data_dir(settings.data_dir), files, prefix=settings.topic_prefix)
    click.echo(f"CRL and ACL rewritten in {files.dir}")
    pid = reload_broker(files)
    if pid is None:
        click.echo(f"no running broker found from {files.pid}: reload it yourself (systemctl reload mosquitto)", err=True)
    else:
        click.echo(f"broker (pid {pid}) told to reload: the kiosk can no longer connect or publish")


@click.command("broker-config")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for mosquitto.conf, the ACL, certificates and CRL (default: <data_dir>/broker).")
@click.option("--port", default=8883, show_default=True, help="TLS port of the listener.")
@click.option("--bind", default=None, help="Address to listen on (default: all).")
@click.option("--host", "hosts", multiple=True, help="Name or address kiosks use to reach the broker (repeat); "
              "127.0.0.1 and localhost are always in the certificate.")
@click.option("--user", default=None, help="User a root-started broker changes to (default: mosquitto); as root, its files are made right for that user.")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Broker log file (default: syslog).")
@_errors
def broker_config(out_dir: Path | None, port: int, bind: str | None, hosts: tuple[str, ...], user: str | None,
                  log_file: Path | None) -> None:
    """Write Mosquitto's TLS configuration: listener with client certificates, per-device ACL, CRL.

    Run `mosquitto -c DIR/mosquitto.conf`. Central connects with DIR's sibling pki/central.crt (CN central).
    """
    from .broker_config import reload_broker, write_broker_config
    from .enrol_service import explicit_broker
    from .enrol_tokens import broker_address, save_broker_address
    from .pki import CentralPki
    from .store import open_store

    settings = _settings()
    pki = CentralPki.for_data_dir(settings.data_dir)
    with open_store(settings.data_dir) as store:
        files = write_broker_config(store, pki, out_dir or default_broker_dir(settings), prefix=settings.topic_prefix,
                                    port=port, bind=bind, hosts=hosts, user=user, log_file=log_file)
        save_broker_address(store, hosts[0] if hosts else None, port)
        told = broker_address(store, *explicit_broker(settings))
    cert, key = pki.ensure_central_certificate()
    click.echo(f"broker configuration written: {files.conf}")
    for warning in files.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"  kiosks will be told {told[0]}:{told[1]} at enrolment (the first --host; "
               "HALL_CENTRAL_BROKER_PUBLIC_HOST/BROKER_TLS_PORT override it)")
    click.echo(f"  start it with: mosquitto -c {files.conf}")
    click.echo(f"  central's client certificate: {cert} (key {key}), CA {pki.ca_cert_path}")
    click.echo(f"  CA fingerprint: {pki.ca_fingerprint()}")
    pid = reload_broker(files)
    if pid is not None:
        click.echo(f"  running broker (pid {pid}) told to reload (a new --port or --bind needs a restart)")
